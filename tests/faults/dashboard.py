"""A dashboard that follows the documented protocol, and remembers what it showed.

What the protocol asks of a dashboard, and this one does:

- after every (re)connect: ``joinProjectRoom``, then ``sync``;
- on ``resync`` (its gateway's Redis subscription was rebuilt): ``sync``;
- ``sync`` pages: while ``hasMore`` is true, call again with the returned ``cursor``
  as ``since`` (same ``lastSeqs``); keep the last answer's cursor for next time;
- show each message once, de-duplicated by message id.

``lastSeqs`` lists, per conversation, the highest seq up to which the dashboard holds
every message, so a message missed between two live ones comes back with the sync.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import socketio

from tests.faults.session import Reconnector, connect, contiguous

CALL_TIMEOUT = 15.0  # seconds for a join or sync answer
MAX_PAGES = 50  # sync pages per catch-up: a server that never says hasMore=false is a finding
CALL_ATTEMPTS = 20  # a refused join or sync (PostgreSQL away) is retried this often


class Dashboard:
    """One agent's dashboard tab, joined to one project."""

    def __init__(self, *, name: str, project_id: int, token: str, urls: list[str]) -> None:
        self.name = name
        self.project_id = project_id
        self._token = token
        self.shown: dict[int, dict[str, Any]] = {}  # message id -> message
        self.first_seen: dict[int, float] = {}  # message id -> time.monotonic()
        self.repeats = 0  # messages received again after they were shown (sync overlap)
        self.seqs: dict[int, set[int]] = collections.defaultdict(set)
        self.latest: dict[int, int] = {}  # conversation id -> its lastSeq, per the server
        self.cursor: str | None = None
        self.syncs = 0
        self.pages = 0
        self.resyncs = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self._sync_lock = asyncio.Lock()
        self._again = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._session = Reconnector(name=name, urls=urls, open=self._open)

    @property
    def reconnects(self) -> int:
        return self._session.reconnects

    async def open(self) -> None:
        await self._session.start()

    async def away(self, seconds: float) -> None:
        """Close the tab's connection, stay away, come back (and catch up)."""
        await self._session.pause()
        await asyncio.sleep(seconds)
        await self._session.resume()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()

    async def _open(self, url: str) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=False)
        client.on("newMessage", self._on_new_message)
        client.on("resync", self._on_resync)
        await connect(client, url, {"token": self._token})
        self._spawn(self._rejoin(client))
        return client

    async def _rejoin(self, client: socketio.AsyncClient) -> None:
        for attempt in range(CALL_ATTEMPTS):
            try:
                ack = await client.call(
                    "joinProjectRoom", {"projectId": self.project_id}, timeout=CALL_TIMEOUT
                )
            except socketio.exceptions.SocketIOError:
                self.errors["join:no-ack"] += 1
                return  # the socket is gone; the next connect joins again
            if isinstance(ack, dict) and ack.get("status") == "ok":
                break
            self.errors["join:refused"] += 1
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        await self.catch_up()

    async def _on_resync(self, *_: Any) -> None:
        self.resyncs += 1
        self._spawn(self.catch_up())

    async def _on_new_message(self, message: dict[str, Any]) -> None:
        self._show(message)

    def _show(self, message: dict[str, Any]) -> None:
        if message["id"] in self.shown:
            self.repeats += 1
            return
        self.shown[message["id"]] = message
        self.first_seen[message["id"]] = time.monotonic()
        self.seqs[message["conversationId"]].add(message["seq"])

    def gaps(self) -> list[int]:
        """Conversations the server says are further than what this dashboard holds."""
        return [c for c, last in self.latest.items() if contiguous(self.seqs[c]) < last]

    async def catch_up(self) -> None:
        """One sync at a time; a trigger during a sync runs one more afterwards."""
        if self._sync_lock.locked():
            self._again = True
            return
        async with self._sync_lock:
            self._again = True
            while self._again:
                self._again = False
                await self._sync_rounds()

    async def _sync_rounds(self) -> None:
        """One paged catch-up, exactly as documented; no repair beyond it."""
        cursor = await self._sync_pages(self.cursor)
        if cursor is None:
            return  # the socket went away; its next connect syncs again
        self.cursor = cursor
        if self.gaps():
            # The server listed conversations further than what it sent: a finding.
            self.errors["sync:listed-behind"] += 1

    async def _sync_pages(self, since: str | None) -> str | None:
        self.syncs += 1
        last_seqs = {str(c): contiguous(s) for c, s in self.seqs.items() if s}
        for _ in range(MAX_PAGES):
            answer = await self._call_sync({"since": since, "lastSeqs": last_seqs})
            if answer is None:
                return None
            self.pages += 1
            for item in answer["conversations"]:
                self.latest[item["id"]] = max(self.latest.get(item["id"], 0), item["lastSeq"])
            for messages in answer["messages"].values():
                for message in messages:
                    self._show(message)
            cursor: str = answer["cursor"]
            if not answer.get("hasMore"):
                return cursor
            since = cursor
        self.errors["sync:too-many-pages"] += 1
        return cursor

    async def _call_sync(self, body: dict[str, Any]) -> dict[str, Any] | None:
        for attempt in range(CALL_ATTEMPTS):
            client = self._session.client
            if client is None or not client.connected:
                return None
            try:
                answer = await client.call(
                    "sync", {"projectId": self.project_id, **body}, timeout=CALL_TIMEOUT
                )
            except socketio.exceptions.SocketIOError:
                self.errors["sync:no-answer"] += 1
                return None
            if isinstance(answer, dict) and "conversations" in answer:
                return answer
            self.errors["sync:refused"] += 1
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        return None

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

"""A widget that follows the documented protocol, and remembers what it sent and saw.

What the protocol asks of a widget, and this one does:

- connect with ``auth {projectId, visitorUid}`` (a v4 UUID it keeps), then ``identify``
  with ``lastSeq`` on every (re)connect;
- resend every unconfirmed message with its original ``tempId`` after a reconnect and
  after a ``resync``; retry a send whose ack failed or never came;
- a message is confirmed by ``messageSent`` or by appearing in ``conversationHistory``.

``lastSeq`` is the highest seq up to which the widget holds every message: with a gap
(a ``messageSent`` lost in transit), the history after it brings the gap back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
import uuid
from typing import Any

import socketio

from tests.faults.session import Reconnector, connect, contiguous

ACK_TIMEOUT = 10.0  # seconds a sendMessage or identify ack may take
RETRY_INTERVAL = 1.0  # seconds between resends of a message whose ack failed
IDENTIFY_ATTEMPTS = 20  # an identify refused (PostgreSQL away) is retried this often


@dataclasses.dataclass
class Outgoing:
    """One message the visitor typed, by its tempId."""

    temp_id: str
    content: str
    emitted_at: float  # time.monotonic() of the first emit
    acked: bool = False
    attempts: int = 0
    last_attempt_at: float = 0.0  # time.monotonic()


class Widget:
    """One visitor's tab."""

    def __init__(self, *, project_id: int, urls: list[str]) -> None:
        self.project_id = project_id
        self.uid = str(uuid.uuid4())
        self.outgoing: dict[str, Outgoing] = {}
        self.confirmed: dict[str, dict[str, Any]] = {}  # tempId -> the stored message
        self.duplicates: list[tuple[str, int, int]] = []  # (tempId, first id, other id)
        self.seqs: set[int] = set()
        self.errors: collections.Counter[str] = collections.Counter()
        self.resyncs = 0
        self._inflight: set[tuple[int, str]] = set()  # (id of the client, tempId)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session = Reconnector(name=f"widget {self.uid[:8]}", urls=urls, open=self._open)
        self._pump: asyncio.Task[None] | None = None

    @property
    def reconnects(self) -> int:
        return self._session.reconnects

    @property
    def last_seq(self) -> int:
        return contiguous(self.seqs)

    @property
    def unconfirmed(self) -> list[Outgoing]:
        return [o for o in self.outgoing.values() if o.temp_id not in self.confirmed]

    async def open(self) -> None:
        await self._session.start()
        self._pump = asyncio.create_task(self._retry_unacked(), name=f"pump {self.uid[:8]}")

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()

    def send(self, content: str) -> None:
        """Type a message: emitted now, retried until acked, resent until confirmed."""
        temp_id = str(uuid.uuid4())
        now = time.monotonic()
        self.outgoing[temp_id] = Outgoing(
            temp_id=temp_id, content=content, emitted_at=now, last_attempt_at=now
        )
        self._spawn(self._emit(temp_id))

    # The connection's life: what happens on every (re)connect and on resync.

    async def _open(self, url: str) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=False)
        client.on("messageSent", self._on_message_sent)
        client.on("conversationHistory", self._on_history)
        client.on("resync", self._on_resync)
        await connect(client, url, {"projectId": self.project_id, "visitorUid": self.uid})
        # Handlers must not wait for acks (they would block the reader): a task catches up.
        self._spawn(self._catch_up(client))
        return client

    async def _catch_up(self, client: socketio.AsyncClient) -> None:
        """identify {lastSeq}, then resend every unconfirmed message by its tempId."""
        for attempt in range(IDENTIFY_ATTEMPTS):
            hello: dict[str, Any] = {"projectId": self.project_id, "visitorUid": self.uid}
            if self.seqs or self.outgoing:
                hello["lastSeq"] = self.last_seq
            try:
                ack = await client.call("identify", hello, timeout=ACK_TIMEOUT)
            except socketio.exceptions.SocketIOError:
                self.errors["identify:no-ack"] += 1
                return  # the socket is gone; the next connect catches up again
            if isinstance(ack, dict) and ack.get("ok"):
                break
            self.errors[f"identify:{_code(ack)}"] += 1
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        for outgoing in self.unconfirmed:
            self._spawn(self._emit(outgoing.temp_id, client=client))

    async def _on_resync(self, *_: Any) -> None:
        self.resyncs += 1
        client = self._session.client
        if client is not None:
            self._spawn(self._catch_up(client))

    async def _on_message_sent(self, data: dict[str, Any]) -> None:
        self._confirm(data["finalMessage"])

    async def _on_history(self, data: dict[str, Any]) -> None:
        for message in data["messages"]:
            if message.get("senderType") == "visitor":
                self._confirm(message)

    def _confirm(self, message: dict[str, Any]) -> None:
        temp_id = message["tempId"]
        known = self.confirmed.get(temp_id)
        if known is not None and known["id"] != message["id"]:
            self.duplicates.append((temp_id, known["id"], message["id"]))
        self.confirmed.setdefault(temp_id, message)
        self.seqs.add(message["seq"])

    # Sending.

    async def _emit(self, temp_id: str, *, client: socketio.AsyncClient | None = None) -> None:
        client = client or self._session.client
        # A send on a dead socket may still wait for its ack; the new socket resends now.
        key = (id(client), temp_id) if client is not None else (0, temp_id)
        if client is None or not client.connected or key in self._inflight:
            return  # the pump or the next catch-up sends it
        outgoing = self.outgoing[temp_id]
        self._inflight.add(key)
        outgoing.attempts += 1
        outgoing.last_attempt_at = time.monotonic()
        try:
            ack = await client.call(
                "sendMessage",
                {"content": outgoing.content, "tempId": temp_id},
                timeout=ACK_TIMEOUT,
            )
        except socketio.exceptions.SocketIOError as exc:
            self.errors[f"send:{type(exc).__name__}"] += 1
            return
        finally:
            self._inflight.discard(key)
        if isinstance(ack, dict) and ack.get("ok"):
            outgoing.acked = True
        else:
            self.errors[f"send:{_code(ack)}"] += 1

    async def _retry_unacked(self) -> None:
        while True:
            await asyncio.sleep(RETRY_INTERVAL)
            due = time.monotonic() - RETRY_INTERVAL
            for outgoing in list(self.outgoing.values()):
                if outgoing.acked or outgoing.temp_id in self.confirmed:
                    continue
                if outgoing.last_attempt_at <= due:
                    self._spawn(self._emit(outgoing.temp_id))

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _code(ack: Any) -> str:
    if isinstance(ack, dict) and isinstance(ack.get("error"), dict):
        return str(ack["error"].get("code"))
    return "malformed-ack"

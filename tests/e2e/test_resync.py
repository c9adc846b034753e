"""A Redis restart loses nothing for connected clients: ``resync``, then the documented catch-up.

The gateway, the Faust worker and the relay run as separate processes on their
own Redis. Redis is restarted while a visitor and a dashboard exchange messages.
It comes back refusing SUBSCRIBE (an ACL) until the relay has published its
backlog: that is the order the issue observed (the relay answers first, the
gateways resubscribe later), made certain instead of left to backoff timing. The
backlog reaches nobody; only ``resync`` tells the clients to catch up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import socketio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.tokens import TokenSigner
from parley.embedded import EmbeddedRedis
from parley.settings import Settings
from persistence.directory import Directory
from persistence.models import messages
from persistence.outbox import Outbox
from tests.clients import CONNECT_WAIT
from tests.factories import project_with_agent, uid
from tests.servers import Cluster, create_topics

pytestmark = pytest.mark.e2e

BEFORE, DURING, AFTER = 8, 12, 5  # visitor messages around the restart
REPLY_EVERY = 4  # the agent answers every few visitor messages
WAIT = 60.0  # seconds any one step may take before the test fails


class GuardedRedis(EmbeddedRedis):
    """Embedded Redis that, when ``refuse_subscribe`` is set, starts refusing SUBSCRIBE."""

    refuse_subscribe = False

    def command(self) -> list[str]:
        command = super().command()
        if self.refuse_subscribe:
            rule = ["default", "on", "nopass", "~*", "&*", "+@all", "-subscribe", "-psubscribe"]
            command += ["--user", *rule]
        return command


async def until(check: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        outcome = check()
        if await outcome if isinstance(outcome, Awaitable) else outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def contiguous(held: dict[int, dict[str, Any]]) -> dict[int, int]:
    """Per conversation, the highest seq with nothing missing below it (from the lowest held)."""
    seqs: dict[int, set[int]] = {}
    for message in held.values():
        seqs.setdefault(message["conversationId"], set()).add(message["seq"])
    last: dict[int, int] = {}
    for conversation, have in seqs.items():
        seq = min(have)
        while seq + 1 in have:
            seq += 1
        last[conversation] = seq
    return last


class ProtocolClient:
    """A Socket.IO client that records ``resync`` and holds messages by id."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.held: dict[int, dict[str, Any]] = {}
        self.resyncs: list[tuple[Any, ...]] = []
        self.client.on("resync", self._resync)

    async def _resync(self, *args: Any) -> None:
        self.resyncs.append(args)

    def hold(self, message: dict[str, Any]) -> None:
        self.held[message["id"]] = message

    async def call(self, event: str, data: Any) -> Any:
        return await self.client.call(event, data, timeout=15)


class Widget(ProtocolClient):
    """A visitor's tab: ``identify {lastSeq}``, resend what is unconfirmed with its tempId."""

    def __init__(self, project_id: int, visitor_uid: str) -> None:
        super().__init__()
        self.project_id = project_id
        self.visitor_uid = visitor_uid
        self.unconfirmed: dict[str, str] = {}  # tempId -> content, until stored
        self.client.on("conversationHistory", self._history)
        self.client.on("messageSent", self._sent)
        self.client.on("agentReplied", self._stored)

    async def _history(self, data: dict[str, Any]) -> None:
        for message in data["messages"]:
            self._stored_now(message)

    async def _sent(self, data: dict[str, Any]) -> None:
        self._stored_now(data["finalMessage"])

    async def _stored(self, message: dict[str, Any]) -> None:
        self._stored_now(message)

    def _stored_now(self, message: dict[str, Any]) -> None:
        self.hold(message)
        if message["senderType"] == "visitor":
            self.unconfirmed.pop(message["tempId"], None)

    async def connect(self, url: str) -> None:
        auth = {"projectId": self.project_id, "visitorUid": self.visitor_uid}
        await self.client.connect(
            url, auth=auth, transports=["websocket"], wait_timeout=CONNECT_WAIT
        )
        await self.identify()

    async def identify(self) -> None:
        hello: dict[str, Any] = {"projectId": self.project_id, "visitorUid": self.visitor_uid}
        if self.held:
            [last] = contiguous(self.held).values()  # one conversation
            hello["lastSeq"] = last
        assert await self.call("identify", hello) == {"ok": True}

    async def send(self, content: str, temp_id: str | None = None) -> None:
        temp_id = temp_id or str(uuid.uuid4())
        self.unconfirmed[temp_id] = content
        ack = await self.call("sendMessage", {"content": content, "tempId": temp_id})
        assert ack == {"ok": True}, ack

    async def follow_resync(self) -> None:
        await self.identify()
        for temp_id, content in list(self.unconfirmed.items()):
            await self.send(content, temp_id)


class Dashboard(ProtocolClient):
    """An agent's dashboard: ``sync`` paging from its cursor until ``hasMore`` is false."""

    def __init__(self, project_id: int) -> None:
        super().__init__()
        self.project_id = project_id
        self.cursor: str | None = None
        self.client.on("newMessage", self._live)

    async def _live(self, message: dict[str, Any]) -> None:
        self.hold(message)

    async def connect(self, url: str, token: str) -> None:
        await self.client.connect(
            url, auth={"token": token}, transports=["websocket"], wait_timeout=CONNECT_WAIT
        )
        joined = await self.call("joinProjectRoom", {"projectId": self.project_id})
        assert joined["status"] == "ok", joined
        await self.catch_up()

    async def catch_up(self) -> None:
        last_seqs = {str(c): seq for c, seq in contiguous(self.held).items()}
        since = self.cursor
        while True:
            body: dict[str, Any] = {"projectId": self.project_id, "lastSeqs": last_seqs}
            if since is not None:
                body["since"] = since
            answer = await self.call("sync", body)
            assert "conversations" in answer, answer
            for listed in answer["messages"].values():
                for message in listed:
                    self.hold(message)
            since = answer["cursor"]
            if not answer["hasMore"]:
                self.cursor = since
                return

    async def reply(self, conversation_id: int, content: str) -> None:
        body = {"conversationId": conversation_id, "content": content, "tempId": str(uuid.uuid4())}
        assert await self.call("sendReply", body) == {"ok": True}


async def stored_ids(engine: AsyncEngine, project_id: int) -> set[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(messages.c.id).where(messages.c.project_id == project_id)
        )
        return {row.id for row in rows}


async def test_after_a_redis_restart_resync_makes_both_clients_whole(
    e2e_settings: Settings, directory: Directory, engine: AsyncEngine, tmp_path: Path
) -> None:
    redis_server = GuardedRedis(workdir=tmp_path / "redis")
    redis_server.start()
    settings = e2e_settings.replace(redis_url=redis_server.url)
    await create_topics(settings)
    cluster = Cluster(settings, tmp_path)
    try:
        project, agent = await project_with_agent(directory)
        [url] = await cluster.start_path()
        widget = Widget(project.id, uid())
        await widget.connect(url)
        dash = Dashboard(project.id)
        await dash.connect(url, TokenSigner(secret=settings.secret, ttl=3600).issue(agent.id))

        async def converse(first: int, count: int) -> None:
            for i in range(first, first + count):
                await widget.send(f"visitor {i}")
                if i % REPLY_EVERY == REPLY_EVERY - 1:
                    await until(lambda: bool(widget.held), "the conversation")
                    [conversation] = {m["conversationId"] for m in widget.held.values()}
                    await dash.reply(conversation, f"agent {i}")
                await asyncio.sleep(0.05)

        await converse(0, BEFORE)
        # Messages flow while Redis restarts; it comes back refusing the gateway's SUBSCRIBE.
        flowing = asyncio.create_task(converse(BEFORE, DURING))
        await asyncio.sleep(0.2)
        redis_server.refuse_subscribe = True
        redis_server.restart()
        await flowing

        # Everything accepted is stored and the relay has published it, to nobody.
        everything = BEFORE + DURING + (BEFORE + DURING) // REPLY_EVERY

        async def relayed() -> bool:
            stored = await stored_ids(engine, project.id)
            return len(stored) == everything and await Outbox(engine=engine).pending() == 0

        await until(relayed, "the backlog to be stored and published")
        assert set(dash.held) < await stored_ids(engine, project.id)
        assert widget.resyncs == dash.resyncs == []

        admin = aioredis.Redis.from_url(redis_server.url)
        await admin.execute_command("ACL", "SETUSER", "default", "+@all")
        await admin.aclose()

        # The gateway resubscribes and says so; each client follows the protocol.
        await until(lambda: bool(widget.resyncs and dash.resyncs), "resync on both clients")
        assert widget.resyncs == dash.resyncs == [()]
        await asyncio.gather(widget.follow_resync(), dash.catch_up())
        await converse(BEFORE + DURING, AFTER)

        everything += AFTER + AFTER // REPLY_EVERY

        async def whole() -> bool:
            all_ids = await stored_ids(engine, project.id)
            return set(widget.held) == set(dash.held) == all_ids and len(all_ids) == everything

        await until(whole, "both clients to hold every message")
        seqs = sorted(m["seq"] for m in dash.held.values())
        assert seqs == list(range(1, everything + 1))  # each tempId stored once, no gap
        assert widget.unconfirmed == {}
        await widget.client.disconnect()
        await dash.client.disconnect()
    finally:
        cluster.stop()
        redis_server.stop()

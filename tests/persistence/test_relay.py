"""The relay loop with real PostgreSQL NOTIFY and real Redis, including a Redis restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import redis.asyncio as aioredis
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.embedded import EmbeddedRedis
from parley.settings import Settings
from persistence.directory import Directory
from persistence.models import outbox
from persistence.outbox import Outbox
from persistence.relay import OutboxRelay, RedisPublisher
from persistence.store import MessageStore
from tests.factories import incoming, uid


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[None]:
    task = asyncio.create_task(relay.run(), name="test-relay")
    try:
        yield
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)


async def collect(pubsub: aioredis.client.PubSub, count: int, timeout: float) -> list[dict]:
    received: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            received.append(json.loads(message["data"]))
    return received


async def test_notify_wakes_the_relay_long_before_the_poll(
    settings: Settings, engine: AsyncEngine, directory: Directory
) -> None:
    assert settings.redis_url and settings.database_url
    client = aioredis.Redis.from_url(settings.redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(settings.events_channel)
    relay = OutboxRelay(
        outbox=Outbox(engine=engine),
        publisher=RedisPublisher(client=client, channel=settings.events_channel),
        database_url=settings.database_url,
        poll_interval=30.0,
        batch_size=50,
        max_attempts=3,
    )
    project = await directory.create_project(name="p")
    try:
        async with running(relay):
            await asyncio.sleep(0.5)  # the listener connects
            started = time.monotonic()
            await MessageStore(engine=engine).append([incoming(project.id, uid())])
            received = await collect(pubsub, 1, timeout=5)
            elapsed = time.monotonic() - started
        assert len(received) == 1
        assert elapsed < 2.0
    finally:
        await pubsub.aclose()
        await client.aclose()


class RecordingRedisPublisher(RedisPublisher):
    """The real Redis publisher, noting what Redis accepted."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.accepted: list[dict] = []

    async def publish(self, message: str) -> None:
        await super().publish(message)
        self.accepted.append(json.loads(message))

    async def publish_many(self, messages: Sequence[str]) -> None:
        await super().publish_many(messages)
        self.accepted.extend(json.loads(message) for message in messages)


async def test_relay_survives_a_redis_restart_without_losing_events(
    settings: Settings, engine: AsyncEngine, directory: Directory, tmp_path: Path
) -> None:
    assert settings.database_url
    redis_server = EmbeddedRedis(workdir=tmp_path / "redis")
    redis_server.start()
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=1, socket_connect_timeout=1)
    publisher = RecordingRedisPublisher(client=client, channel="events")
    relay = OutboxRelay(
        outbox=Outbox(engine=engine),
        publisher=publisher,
        database_url=settings.database_url,
        poll_interval=0.2,
        batch_size=50,
        max_attempts=3,
    )
    project = await directory.create_project(name="p")
    store = MessageStore(engine=engine)
    try:
        async with running(relay):
            redis_server.stop()
            visitor = uid()
            await store.append([incoming(project.id, visitor, f"m{i}") for i in range(5)])
            await asyncio.sleep(1.0)  # the relay fails and backs off meanwhile
            assert await Outbox(engine=engine).pending() == 5
            assert publisher.accepted == []
            redis_server.start()
            deadline = time.monotonic() + 10
            while await Outbox(engine=engine).pending() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        assert [e["message"]["content"] for e in publisher.accepted] == [f"m{i}" for i in range(5)]
        assert await Outbox(engine=engine).pending() == 0
        assert await Outbox(engine=engine).parked() == []
    finally:
        await client.aclose()
        redis_server.stop()


def redis_outages() -> float:
    sample = REGISTRY.get_sample_value("parley_relay_outage_rounds_total", {"service": "redis"})
    return sample or 0.0


async def test_a_redis_refusing_every_publish_is_an_outage_not_a_fault_of_each_row(
    settings: Settings, engine: AsyncEngine, directory: Directory, tmp_path: Path
) -> None:
    """NOPERM on PUBLISH (an ACL) holds for every row: back off, count nothing, park nothing."""
    assert settings.database_url
    redis_server = EmbeddedRedis(workdir=tmp_path / "redis")
    redis_server.start()
    admin = aioredis.Redis.from_url(redis_server.url)
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=1, socket_connect_timeout=1)
    publisher = RecordingRedisPublisher(client=client, channel="events")
    max_attempts = 2
    relay = OutboxRelay(
        outbox=Outbox(engine=engine),
        publisher=publisher,
        database_url=settings.database_url,
        poll_interval=0.2,
        batch_size=50,
        max_attempts=max_attempts,
    )
    project = await directory.create_project(name="p")
    store = MessageStore(engine=engine)
    try:
        await admin.execute_command("ACL", "SETUSER", "default", "-publish")
        async with running(relay):
            visitor = uid()
            await store.append([incoming(project.id, visitor, f"m{i}") for i in range(5)])
            # Backoff 0.1 + 0.2 + 0.4 + 0.8 s: at least three refused rounds, more than
            # max_attempts, so counting them against rows would have parked every one.
            outages = redis_outages()
            await asyncio.sleep(2.0)
            assert redis_outages() >= outages + 3
            assert publisher.accepted == []
            async with engine.connect() as conn:
                rows = (await conn.execute(sa.select(outbox.c.attempts, outbox.c.parked_at))).all()
            assert [(r.attempts, r.parked_at) for r in rows] == [(0, None)] * 5
            await admin.execute_command("ACL", "SETUSER", "default", "+@all")
            deadline = time.monotonic() + 10
            while await Outbox(engine=engine).pending() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        assert [e["message"]["content"] for e in publisher.accepted] == [f"m{i}" for i in range(5)]
        assert await Outbox(engine=engine).parked() == []
    finally:
        await client.aclose()
        await admin.aclose()
        redis_server.stop()


async def test_a_round_goes_out_in_one_pipeline_in_order_each_event_once(
    settings: Settings, engine: AsyncEngine, directory: Directory
) -> None:
    assert settings.redis_url
    client = aioredis.Redis.from_url(settings.redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(settings.events_channel)
    publisher = RecordingRedisPublisher(client=client, channel=settings.events_channel)
    project = await directory.create_project(name="p")
    store = MessageStore(engine=engine)
    visitors = [uid() for _ in range(3)]
    for round_ in range(40):
        await store.append([incoming(project.id, v, f"{v}-{round_}") for v in visitors])
    outbox_ = Outbox(engine=engine)
    try:
        reports = [
            await outbox_.relay_batch(publisher, batch_size=50, max_attempts=3) for _ in range(3)
        ]
        received = await collect(pubsub, 120, timeout=10)
    finally:
        await pubsub.aclose()
        await client.aclose()
    assert [r.published for r in reports] == [50, 50, 20]
    assert len(received) == 120
    assert len({e["eventId"] for e in received}) == 120
    for visitor in visitors:
        seqs = [e["message"]["seq"] for e in received if e["message"]["visitorUid"] == visitor]
        assert seqs == list(range(1, 41))
    assert received == publisher.accepted
    assert await outbox_.pending() == 0

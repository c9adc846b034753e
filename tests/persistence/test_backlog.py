"""The relay's operator metrics stay current through a Redis outage."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.embedded import EmbeddedRedis
from parley.settings import Settings
from persistence.backlog import (
    BACKLOG,
    CHECKED,
    OLDEST_AGE,
    PARKED_ROWS,
    BacklogMonitor,
    read_backlog,
)
from persistence.directory import Directory
from persistence.models import outbox
from persistence.outbox import Outbox
from persistence.relay import PUBLISH_DOWN, PUBLISH_OUTAGES, OutboxRelay, RedisPublisher
from persistence.store import MessageStore
from tests.factories import incoming, uid


def value(metric: object) -> float:
    return float(metric._value.get())  # type: ignore[attr-defined]


async def wait_until(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[None]:
    task = asyncio.create_task(relay.run(), name="test-relay")
    try:
        yield
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)


async def test_backlog_counts_pending_and_parked_and_ages_the_oldest(
    engine: AsyncEngine, directory: Directory
) -> None:
    empty = await read_backlog(engine)
    assert (empty.pending, empty.oldest_age, empty.parked) == (0, 0.0, 0)
    project = await directory.create_project(name="p")
    await MessageStore(engine=engine).append(
        [incoming(project.id, uid(), f"m{i}") for i in range(3)]
    )
    async with engine.begin() as conn:
        await conn.execute(
            outbox.update().values(created_at=sa.func.now() - sa.text("interval '90 seconds'"))
        )
        first = await conn.scalar(sa.select(sa.func.min(outbox.c.id)))
        await conn.execute(
            outbox.update().where(outbox.c.id == first).values(parked_at=sa.func.now())
        )
    backlog = await BacklogMonitor(engine=engine).measure()
    assert backlog.pending == 2 and backlog.parked == 1
    assert 89 < backlog.oldest_age < 120
    assert value(BACKLOG) == 2 and value(PARKED_ROWS) == 1 and value(OLDEST_AGE) > 89
    assert time.time() - value(CHECKED) < 5


async def test_during_a_redis_outage_the_backlog_grows_and_one_outage_is_counted(
    settings: Settings, engine: AsyncEngine, directory: Directory, tmp_path: Path
) -> None:
    assert settings.database_url
    redis_server = EmbeddedRedis(workdir=tmp_path / "redis")
    redis_server.start()
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=1, socket_connect_timeout=1)
    relay = OutboxRelay(
        outbox=Outbox(engine=engine),
        publisher=RedisPublisher(client=client, channel="events"),
        database_url=settings.database_url,
        poll_interval=0.2,
        batch_size=50,
        max_attempts=3,
        backlog=BacklogMonitor(engine=engine, interval=0.1),
    )
    project = await directory.create_project(name="p")
    outages = value(PUBLISH_OUTAGES)
    try:
        async with running(relay):
            redis_server.stop()
            await MessageStore(engine=engine).append(
                [incoming(project.id, uid(), f"m{i}") for i in range(4)]
            )
            # The old gauge would freeze here; the backlog follows the table.
            await wait_until(lambda: value(BACKLOG) == 4)
            await wait_until(lambda: value(PUBLISH_DOWN) == 1)
            await asyncio.sleep(1.0)  # several failed rounds: still one outage
            assert value(PUBLISH_OUTAGES) == outages + 1
            assert value(OLDEST_AGE) > 0.5
            redis_server.start()
            await wait_until(lambda: value(BACKLOG) == 0 and value(PUBLISH_DOWN) == 0)
        assert value(PUBLISH_OUTAGES) == outages + 1
    finally:
        await client.aclose()
        redis_server.stop()

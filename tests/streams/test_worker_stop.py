"""A worker stopped while PostgreSQL is down: it exits in time and commits nothing unstored."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from parley.embedded import EmbeddedPostgres
from parley.settings import Settings
from persistence.database import create_engine
from persistence.directory import Directory
from persistence.models import messages
from persistence.schema import prepare
from streams.app import STOP_TIMEOUT, STOP_TIMEOUT_EXIT_CODE
from streams.events import VisitorMessage
from tests.factories import uid
from tests.servers import Cluster, create_topics

pytestmark = pytest.mark.e2e

PENDING = 20  # messages produced while PostgreSQL is down
RETRYING_FOR = 2.0  # seconds the worker retries before it is stopped: several commit intervals


async def stored(database_url: str) -> list[tuple[int, str]]:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.select(messages.c.seq, messages.c.content).order_by("seq"))
            return [(row.seq, row.content) for row in rows]
    finally:
        await engine.dispose()


async def wait_stored(database_url: str, expected: list[tuple[int, str]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (rows := await stored(database_url)) != expected:
        assert time.monotonic() < deadline, f"stored {rows}, expected {expected}"
        await asyncio.sleep(0.2)


async def committed_offset(settings: Settings, partition: TopicPartition) -> int:
    """The group's committed offset, read without joining the group (manual assignment)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.worker_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign([partition])
        offset = await consumer.committed(partition)
    finally:
        await consumer.stop()
    return -1 if offset is None else offset


async def test_a_worker_stopped_during_an_outage_exits_in_time_and_loses_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    postgres = EmbeddedPostgres(workdir=tmp_path / "postgres")
    postgres.start()
    database_url = postgres.url.rsplit("/", 1)[0] + "/parley"
    settings = settings.replace(database_url=database_url)
    cluster = Cluster(settings, tmp_path)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    try:
        await asyncio.to_thread(prepare, database_url)
        engine = create_engine(database_url, pool_size=1)
        project = await Directory(engine=engine).create_project(name="p")
        await engine.dispose()
        await create_topics(settings)
        await producer.start()
        visitor = uid()

        async def send(content: str) -> TopicPartition:
            event = VisitorMessage(
                project_id=project.id, visitor_uid=visitor, temp_id=str(uuid.uuid4()),
                content=content,
            )  # fmt: skip
            meta = await producer.send_and_wait(
                settings.visitor_topic, value=event.to_json(), key=event.key
            )
            return TopicPartition(meta.topic, meta.partition), meta.offset

        first = await cluster.worker("worker-1")
        (partition, before_offset) = await send("before")
        await wait_stored(database_url, [(1, "before")], timeout=30)

        postgres.stop()
        pending_offsets = [(await send(f"pending {i}"))[1] for i in range(PENDING)]
        assert pending_offsets[0] == before_offset + 1
        await first.wait_for_output("retrying in", timeout=30)
        await asyncio.sleep(RETRYING_FOR)  # a commit past the batch would have happened by now

        began = time.monotonic()
        first.signal(signal.SIGTERM)  # returns once the process has exited
        took = time.monotonic() - began
        assert first.process is not None
        print(f"worker exited {took:.2f}s after SIGTERM, code {first.process.returncode}")
        assert took < STOP_TIMEOUT
        assert first.process.returncode != STOP_TIMEOUT_EXIT_CODE, first.output()[-4000:]
        assert "stopping with a batch of" in first.output()
        # Nothing past the stored message may be committed.
        committed = await committed_offset(settings, partition)
        print(f"committed offset {committed}, first pending {pending_offsets[0]}")
        assert committed <= pending_offsets[0]

        postgres.start()
        restarted = time.monotonic()
        await cluster.worker("worker-2")
        expected = [(1, "before")] + [(i + 2, f"pending {i}") for i in range(PENDING)]
        await wait_stored(database_url, expected, timeout=60)
        print(f"all stored {time.monotonic() - restarted:.1f}s after the second worker started")
        await asyncio.sleep(1.0)  # nothing arrives twice later either
        assert await stored(database_url) == expected
    finally:
        await producer.stop()
        cluster.stop()
        postgres.stop()

"""Several storers per agent (``PARLEY_AGENT_STORERS``): each partition stays with one,
so every conversation keeps its order."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.settings import Settings
from persistence.directory import Directory
from persistence.models import conversations, messages, outbox, visitors
from streams.agent import storer_for
from streams.events import VisitorMessage
from tests.factories import uid
from tests.servers import Cluster, create_topics

pytestmark = pytest.mark.e2e

STORERS = 2  # the worker under test runs this many
PER_VISITOR = 300  # messages per visitor, interleaved with every other visitor's
STORE_DEADLINE = 120.0  # seconds to store the backlog on a busy machine


@pytest.fixture
async def cluster(settings: Settings, tmp_path: Path) -> AsyncIterator[Cluster]:
    await create_topics(settings)
    running = Cluster(settings.replace(agent_storers=STORERS), tmp_path)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("storers", [1, 2, 3])
def test_a_partition_always_goes_to_the_same_storer_and_every_storer_gets_some(
    storers: int,
) -> None:
    chosen = [storer_for(p, storers=storers) for p in range(8)]
    assert chosen == [storer_for(p, storers=storers) for p in range(8)]
    assert set(chosen) == set(range(storers))


async def stored(engine: AsyncEngine) -> dict[str, list[str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(visitors.c.uid, messages.c.content)
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .join(visitors, visitors.c.id == conversations.c.visitor_id)
            .order_by(messages.c.conversation_id, messages.c.seq)
        )
        by_visitor: dict[str, list[str]] = {}
        for row in rows:
            by_visitor.setdefault(row.uid, []).append(row.content)
        return by_visitor


async def test_a_backlog_over_every_partition_is_stored_once_in_order_by_both_storers(
    cluster: Cluster, engine: AsyncEngine, directory: Directory
) -> None:
    settings = cluster.settings
    partitions = settings.topic_partitions
    project = await directory.create_project(name="p")
    # One visitor per partition (placed there explicitly), so both storers work at once.
    people = [uid() for _ in range(partitions)]
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=20
    )
    await producer.start()
    try:
        sent = []
        for index in range(PER_VISITOR * partitions):
            partition = index % partitions
            event = VisitorMessage(
                project_id=project.id,
                visitor_uid=people[partition],
                temp_id=str(uuid.uuid4()),
                content=f"m{index // partitions}",
            )
            sent.append(
                await producer.send(
                    settings.visitor_topic,
                    value=event.to_json(),
                    key=event.key,
                    headers=event.headers,
                    partition=partition,
                )
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    await cluster.worker()
    expected = {person: [f"m{i}" for i in range(PER_VISITOR)] for person in people}
    deadline = time.monotonic() + STORE_DEADLINE
    while (by_visitor := await stored(engine)) != expected:
        for person, contents in by_visitor.items():
            # Never a gap, a duplicate or a reordering on the way: always a prefix.
            assert contents == expected[person][: len(contents)], person
        count = sum(map(len, by_visitor.values()))
        assert time.monotonic() < deadline, f"{count} of {PER_VISITOR * partitions} stored"
        await asyncio.sleep(0.2)
    async with engine.connect() as conn:
        outbox_rows = await conn.scalar(sa.select(sa.func.count()).select_from(outbox))
    assert outbox_rows == PER_VISITOR * partitions

"""Several storers per agent (``PARLEY_AGENT_STORERS``): each partition stays with one,
so every conversation keeps its order."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.settings import Settings
from persistence.directory import Directory
from persistence.models import outbox
from streams.agent import storer_for
from streams.events import VisitorMessage
from tests.factories import uid
from tests.servers import Cluster, create_topics
from tests.streams.backlog import produce, wait_stored_in_order

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


async def test_a_backlog_over_every_partition_is_stored_once_in_order_by_both_storers(
    cluster: Cluster, engine: AsyncEngine, directory: Directory
) -> None:
    settings = cluster.settings
    partitions = settings.topic_partitions
    project = await directory.create_project(name="p")
    # One visitor per partition (placed there explicitly), so both storers work at once.
    people = [uid() for _ in range(partitions)]
    events = [
        VisitorMessage(
            project_id=project.id,
            visitor_uid=people[index % partitions],
            temp_id=str(uuid.uuid4()),
            content=f"m{index // partitions}",
        )
        for index in range(PER_VISITOR * partitions)
    ]
    await produce(settings, events, partitions=[i % partitions for i in range(len(events))])

    await cluster.worker()
    expected = {person: [f"m{i}" for i in range(PER_VISITOR)] for person in people}
    await wait_stored_in_order(engine, expected, deadline=STORE_DEADLINE)
    async with engine.connect() as conn:
        outbox_rows = await conn.scalar(sa.select(sa.func.count()).select_from(outbox))
    assert outbox_rows == PER_VISITOR * partitions

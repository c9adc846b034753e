"""A backlog past every buffer: delivery pauses and resumes; each event stored once, in order."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.embedded import free_port
from parley.settings import Settings
from persistence.directory import Directory
from streams.agent import INTAKE_CAPACITY
from streams.events import VisitorMessage
from tests.factories import uid
from tests.servers import Cluster, create_topics, metric
from tests.streams.backlog import produce, wait_stored_in_order

pytestmark = pytest.mark.e2e

# Faust's buffer per stream, made small: it passes its high-water mark many times.
STREAM_BUFFER = 64
VISITORS = 3
EVENTS = INTAKE_CAPACITY + 1_500  # more than the intake and the stream buffer hold
STORE_DEADLINE = 120.0  # seconds to store the whole backlog on a busy machine


@pytest.fixture
async def cluster(settings: Settings, tmp_path: Path) -> AsyncIterator[Cluster]:
    await create_topics(settings)
    running = Cluster(settings, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def backlog(project_id: int, visitors: list[str]) -> list[VisitorMessage]:
    return [
        VisitorMessage(
            project_id=project_id,
            visitor_uid=visitors[index % len(visitors)],
            temp_id=str(uuid.uuid4()),
            content=f"m{index}",
        )
        for index in range(EVENTS)
    ]


async def test_a_backlog_larger_than_the_buffers_is_stored_once_in_order(
    cluster: Cluster, engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    visitors = [uid() for _ in range(VISITORS)]
    await produce(cluster.settings, backlog(project.id, visitors))

    metrics_port = free_port()
    await cluster.worker(
        STREAM_BUFFER_MAXSIZE=str(STREAM_BUFFER), PARLEY_WORKER_METRICS_PORT=str(metrics_port)
    )
    expected = {
        visitor: [f"m{i}" for i in range(EVENTS) if i % VISITORS == n]
        for n, visitor in enumerate(visitors)
    }
    await wait_stored_in_order(engine, expected, deadline=STORE_DEADLINE)

    # The backlog went through the paused-delivery path, not around it.
    assert await metric(metrics_port, "parley_worker_buffer_waits_total") > 0

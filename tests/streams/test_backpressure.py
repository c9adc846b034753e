"""A backlog past every buffer: delivery pauses and resumes; each event stored once, in order."""

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

from parley.embedded import free_port
from parley.settings import Settings
from persistence.directory import Directory
from persistence.models import conversations, messages, visitors
from streams.agent import INTAKE_CAPACITY
from streams.events import VisitorMessage
from tests.factories import uid
from tests.servers import Cluster, create_topics, metric

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


async def preload(settings: Settings, project_id: int, visitors: list[str]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=20
    )
    await producer.start()
    try:
        sent = []
        for index in range(EVENTS):
            event = VisitorMessage(
                project_id=project_id,
                visitor_uid=visitors[index % len(visitors)],
                temp_id=str(uuid.uuid4()),
                content=f"m{index}",
            )
            sent.append(
                await producer.send(
                    settings.visitor_topic,
                    value=event.to_json(),
                    key=event.key,
                    headers=event.headers,
                )
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def stored(engine: AsyncEngine) -> dict[str, list[str]]:
    """Each visitor's stored contents, in conversation order."""
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


async def test_a_backlog_larger_than_the_buffers_is_stored_once_in_order(
    cluster: Cluster, engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    visitors = [uid() for _ in range(VISITORS)]
    await preload(cluster.settings, project.id, visitors)

    metrics_port = free_port()
    await cluster.worker(
        STREAM_BUFFER_MAXSIZE=str(STREAM_BUFFER), PARLEY_WORKER_METRICS_PORT=str(metrics_port)
    )
    expected = {
        visitor: [f"m{i}" for i in range(EVENTS) if i % VISITORS == n]
        for n, visitor in enumerate(visitors)
    }
    deadline = time.monotonic() + STORE_DEADLINE
    while (by_visitor := await stored(engine)) != expected:
        for visitor, contents in by_visitor.items():
            # Never a gap, a duplicate or a reordering on the way: always a prefix.
            assert contents == expected[visitor][: len(contents)], visitor
        count = sum(map(len, by_visitor.values()))
        assert time.monotonic() < deadline, f"{count} of {EVENTS} stored"
        await asyncio.sleep(0.2)

    # The backlog went through the paused-delivery path, not around it.
    assert await metric(metrics_port, "parley_worker_buffer_waits_total") > 0

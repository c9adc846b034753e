"""A backlog for the worker tests: visitor messages produced straight to the topic,
then what the worker stored, checked as it goes for gaps, duplicates and reordering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.settings import Settings
from persistence.models import conversations, messages, visitors
from streams.events import VisitorMessage

LINGER = 20  # milliseconds: a backlog goes out in few, large batches
POLL = 0.2  # seconds between reads of what is stored


async def produce(
    settings: Settings,
    events: Sequence[VisitorMessage],
    *,
    partitions: Sequence[int | None] | None = None,
) -> None:
    """Produce ``events`` in order, each to its partition in ``partitions`` if given."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=LINGER
    )
    await producer.start()
    try:
        sent = [
            await producer.send(
                settings.visitor_topic,
                value=event.to_json(),
                key=event.key,
                headers=event.headers,
                partition=partitions[index] if partitions is not None else None,
            )
            for index, event in enumerate(events)
        ]
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


async def wait_stored_in_order(
    engine: AsyncEngine, expected: dict[str, list[str]], *, deadline: float
) -> None:
    """Wait until exactly ``expected`` is stored; every read on the way must be a prefix
    of it per visitor (never a gap, a duplicate or a reordering). ``deadline`` in seconds."""
    total = sum(map(len, expected.values()))
    give_up = time.monotonic() + deadline
    while (by_visitor := await stored(engine)) != expected:
        for visitor, contents in by_visitor.items():
            assert contents == expected[visitor][: len(contents)], visitor
        count = sum(map(len, by_visitor.values()))
        assert time.monotonic() < give_up, f"{count} of {total} stored"
        await asyncio.sleep(POLL)

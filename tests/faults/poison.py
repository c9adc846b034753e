"""Raw records no gateway should have produced, written straight to the visitor topic.

Each kind is a way a record can be wrong: not JSON, not an event, or an event
PostgreSQL cannot store (a NUL, a lone surrogate, an integer past bigint) or
that names a project that does not exist. The worker must set each aside (the
dead-letter topic) and keep storing the good records around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.events import event_headers, partition_key


def _event(project_id: int, visitor_uid: str, **fields: Any) -> dict[str, Any]:
    return {
        "eventId": str(uuid.uuid4()),
        "type": "visitor.message",
        "projectId": project_id,
        "visitorUid": visitor_uid,
        "tempId": str(uuid.uuid4()),
        "content": "poison",
        "sessionMetadata": None,
        "acceptedAt": "2026-01-01T00:00:00Z",
        **fields,
    }


def poison_values(project_id: int, visitor_uid: str) -> list[tuple[str, bytes]]:
    """(kind, raw value) for every kind of bad record, all keyed to one visitor."""
    bad_events = {
        "nul-in-content": _event(project_id, visitor_uid, content="poison\u0000pill"),
        "nul-in-metadata": _event(
            project_id, visitor_uid, sessionMetadata={"referrer": "http://x/\u0000"}
        ),
        "lone-surrogate": _event(project_id, visitor_uid, content="half \ud800 a pair"),
        "project-past-bigint": _event(2**70, visitor_uid),
        "unknown-project": _event(2**62, visitor_uid),
    }
    values = [
        ("not-json", b"\xff\xfe not json"),
        ("not-an-object", b"[1, 2, 3]"),
        *(
            # ensure_ascii keeps the lone surrogate encodable: it travels as \ud800.
            (kind, json.dumps(body, ensure_ascii=True).encode())
            for kind, body in bad_events.items()
        ),
    ]
    return values


class PoisonProducer:
    """Writes bad records to one topic, acks=all, as a broken or hostile producer would."""

    def __init__(self, *, bootstrap_servers: str, topic: str) -> None:
        self._topic = topic
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
        self.sent: list[str] = []

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, project_id: int, visitor_uid: str, kind: str, value: bytes) -> None:
        await self._producer.send_and_wait(
            self._topic,
            value=value,
            key=partition_key(project_id, visitor_uid),
            headers=event_headers(str(uuid.uuid4()), "visitor.message"),
        )
        self.sent.append(kind)


async def count_dead_letters(
    *, bootstrap_servers: str, topic: str, expected: int, timeout: float
) -> int:
    """Records on the dead-letter topic, read until ``expected`` arrived or ``timeout``."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    count = 0
    deadline = time.monotonic() + timeout
    try:
        while count < expected and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    batches = await consumer.getmany(timeout_ms=500)
                    count += sum(len(records) for records in batches.values())
    finally:
        await consumer.stop()
    return count

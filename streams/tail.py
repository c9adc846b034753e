"""Reading a topic as JSON lines: ``parley topics tail`` and the dead-letter tools.

The reader takes no consumer group and commits nothing, so looking never moves
the worker's offsets. It stops after ``limit`` records, or once nothing has
arrived for ``idle`` seconds (end offsets are not trusted: see streams/lag.py).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError

from parley.settings import Settings
from streams.errors import BrokerUnavailable
from streams.security import KafkaSecurity
from streams.topics import REQUEST_TIMEOUT

IDLE_TIMEOUT = 2.0  # seconds without a record before a bounded read ends
POLL_TIMEOUT = 500  # milliseconds per getmany


def record_json(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    """One record as a JSON-ready object; a value that is not JSON is kept as text."""
    raw = record.value or b""
    value: Any
    try:
        value = json.loads(raw)
    except ValueError:
        try:
            value = raw.decode()
        except UnicodeDecodeError:
            value = {"base64": base64.b64encode(raw).decode()}
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": dt.datetime.fromtimestamp(record.timestamp / 1000, dt.UTC).isoformat(),
        "key": (record.key or b"").decode(errors="replace"),
        "headers": {name: data.decode(errors="replace") for name, data in record.headers},
        "value": value,
    }


@contextlib.asynccontextmanager
async def topic_consumer(
    settings: Settings, topic: str, *, group: str | None = None, from_beginning: bool = True
) -> AsyncIterator[AIOKafkaConsumer]:
    settings.require("kafka_bootstrap_servers")
    assert settings.kafka_bootstrap_servers is not None
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        fetch_max_wait_ms=settings.fetch_wait_ms,
        request_timeout_ms=REQUEST_TIMEOUT,
        client_id="parley-tools",
        **KafkaSecurity.from_settings(settings).aiokafka_kwargs(),
    )
    try:
        await consumer.start()
    except (KafkaError, OSError) as exc:
        await consumer.stop()
        raise BrokerUnavailable(
            f"broker at {settings.kafka_bootstrap_servers} cannot be reached"
        ) from exc
    try:
        yield consumer
    finally:
        await consumer.stop()


async def read_records(
    consumer: AIOKafkaConsumer, *, limit: int | None, idle: float | None
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Records until ``limit``, or until ``idle`` seconds pass without one (None: forever)."""
    seen = 0
    quiet = 0.0
    while limit is None or seen < limit:
        batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT, max_records=100)
        records = [record for batch in batches.values() for record in batch]
        if not records:
            quiet += POLL_TIMEOUT / 1000
            if idle is not None and quiet >= idle:
                return
            continue
        quiet = 0.0
        for record in sorted(records, key=lambda r: (r.partition, r.offset)):
            yield record
            seen += 1
            if limit is not None and seen >= limit:
                return


async def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool,
    limit: int | None,
    follow: bool,
) -> AsyncIterator[dict[str, Any]]:
    """``parley topics tail``: records as JSON objects (``follow`` waits for new ones)."""
    async with topic_consumer(settings, topic, from_beginning=from_beginning) as consumer:
        idle = None if follow else IDLE_TIMEOUT
        async for record in read_records(consumer, limit=limit, idle=idle):
            yield record_json(record)

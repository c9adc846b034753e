"""Consumer lag: how far the worker's group is behind the end of each partition.

Lag is ``end offset - committed offset`` per partition (the log start when the
group has committed nothing yet). The worker exports it as
``parley_worker_consumer_lag{topic,partition}`` every ``LAG_INTERVAL`` seconds
when its metrics port is on, and ``parley topics list`` prints it.

End offsets come from the broker's ListOffsets. Redpanda and Kafka answer it
correctly; the embedded Tansu broker does not (its "latest" offset is not the
log end), so on Tansu the figures are not to be trusted: the tests check the
arithmetic and the committed offsets on Tansu, not Tansu's end offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Gauge

from parley.settings import Settings
from persistence.backoff import Backoff
from streams.errors import BrokerUnavailable
from streams.security import KafkaSecurity
from streams.topics import REQUEST_TIMEOUT, admin_client

logger = logging.getLogger("parley.lag")

LAG_INTERVAL = 15.0  # seconds between two lag readings in the worker

CONSUMER_LAG = Gauge(
    "parley_worker_consumer_lag",
    "Messages the worker's consumer group has not committed yet, per partition",
    ["topic", "partition"],
)


class OffsetReader(Protocol):
    """What lag needs from the broker."""

    async def partitions(self, topic: str) -> list[TopicPartition]: ...

    async def log_offsets(
        self, partitions: list[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """(first offsets, end offsets) per partition."""
        ...

    async def committed(
        self, group: str, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class PartitionLag:
    topic: str
    partition: int
    first: int
    end: int
    committed: int | None
    lag: int


def partition_lag(
    partitions: Iterable[TopicPartition],
    *,
    first: Mapping[TopicPartition, int],
    end: Mapping[TopicPartition, int],
    committed: Mapping[TopicPartition, int],
) -> list[PartitionLag]:
    """Lag per partition; a group that never committed starts at the log's first offset."""
    rows = []
    for tp in sorted(partitions):
        done = committed.get(tp)
        start = first.get(tp, 0)
        position = start if done is None or done < start else done
        rows.append(
            PartitionLag(
                topic=tp.topic,
                partition=tp.partition,
                first=start,
                end=end.get(tp, 0),
                committed=done,
                lag=max(end.get(tp, 0) - position, 0),
            )
        )
    return rows


async def group_lag(
    reader: OffsetReader, *, group: str, topics: Iterable[str]
) -> list[PartitionLag]:
    partitions = [tp for topic in topics for tp in await reader.partitions(topic)]
    if not partitions:
        return []
    first, end = await reader.log_offsets(partitions)
    committed = await reader.committed(group, partitions)
    return partition_lag(partitions, first=first, end=end, committed=committed)


class KafkaOffsets:
    """OffsetReader over aiokafka: a group-less consumer and an admin client."""

    def __init__(self, *, consumer: AIOKafkaConsumer, admin: object) -> None:
        self._consumer = consumer
        self._admin = admin

    async def partitions(self, topic: str) -> list[TopicPartition]:
        await self._consumer._client.force_metadata_update()
        numbers = self._consumer.partitions_for_topic(topic) or set()
        return [TopicPartition(topic, number) for number in sorted(numbers)]

    async def log_offsets(
        self, partitions: list[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        first = await self._consumer.beginning_offsets(partitions)
        end = await self._consumer.end_offsets(partitions)
        return dict(first), dict(end)

    async def committed(
        self, group: str, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        offsets = await self._admin.list_consumer_group_offsets(  # type: ignore[attr-defined]
            group, partitions=partitions
        )
        return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


@contextlib.asynccontextmanager
async def kafka_offsets(settings: Settings) -> AsyncIterator[KafkaOffsets]:
    settings.require("kafka_bootstrap_servers")
    assert settings.kafka_bootstrap_servers is not None
    security = KafkaSecurity.from_settings(settings)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=REQUEST_TIMEOUT,
        client_id="parley-lag",
        **security.aiokafka_kwargs(),
    )
    try:
        await consumer.start()
    except (KafkaError, OSError) as exc:
        await consumer.stop()
        raise BrokerUnavailable(
            f"broker at {settings.kafka_bootstrap_servers} cannot be reached"
        ) from exc
    try:
        async with admin_client(settings.kafka_bootstrap_servers, security=security) as admin:
            yield KafkaOffsets(consumer=consumer, admin=admin)
    finally:
        await consumer.stop()


class LagMonitor:
    """The worker's lag gauge: a named task that reads lag until cancelled."""

    def __init__(self, *, settings: Settings, interval: float = LAG_INTERVAL) -> None:
        self._settings = settings
        self._interval = interval
        self._topics = (settings.visitor_topic, settings.agent_topic)

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                async with kafka_offsets(self._settings) as reader:
                    while True:
                        await self.measure(reader)
                        backoff.reset()
                        await asyncio.sleep(self._interval)
            except (KafkaError, BrokerUnavailable, OSError) as exc:
                delay = backoff.next()
                logger.warning(
                    "reading consumer lag failed (%s); retrying in %.1fs",
                    type(exc).__name__,
                    delay,
                    extra={"action": "lag.retry"},
                )
                await asyncio.sleep(delay)

    async def measure(self, reader: OffsetReader) -> list[PartitionLag]:
        rows = await group_lag(reader, group=self._settings.worker_id, topics=self._topics)
        for row in rows:
            CONSUMER_LAG.labels(row.topic, str(row.partition)).set(row.lag)
        return rows

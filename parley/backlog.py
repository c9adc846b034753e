"""How far a consumer group is behind, from what the group committed and what a fetch sees.

``parley run`` asks this before it stops or recycles the in-memory broker: every
record below a partition's committed offset has been stored by the worker, so the
broker may go once the committed offset reaches the end of every partition.

The end of a partition comes from the high watermark of a Fetch answer, never from
ListOffsets: the embedded Tansu answers ListOffsets wrongly. Nothing here is
Tansu-specific; it works the same against Redpanda.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.errors import BrokerUnavailable

logger = logging.getLogger("parley.backlog")

FETCH_ROUND = 200  # milliseconds one fetch may wait for its answer
ROUNDS = 20  # fetch rounds before a partition without a high watermark is an error
DRAIN_POLL = 0.5  # seconds between two looks while waiting for a drain


@dataclasses.dataclass(frozen=True)
class PartitionBacklog:
    partition: TopicPartition
    committed: int
    end: int

    @property
    def behind(self) -> int:
        return max(0, self.end - self.committed)


async def group_backlog(
    *, bootstrap_servers: str, group_id: str, topics: Iterable[str]
) -> list[PartitionBacklog]:
    """Each partition of ``topics``: the group's committed offset and the log's end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_ROUND,
        auto_offset_reset="earliest",
        client_id="parley-backlog",
    )
    try:
        await consumer.start()
        await consumer.topics()  # loads metadata for every topic
        partitions = [
            TopicPartition(topic, number)
            for topic in topics
            for number in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return []
        consumer.assign(partitions)
        committed: dict[TopicPartition, int] = {}
        for tp in partitions:
            committed[tp] = await consumer.committed(tp) or 0
            consumer.seek(tp, committed[tp])
        for _ in range(ROUNDS):
            if all(consumer.highwater(tp) is not None for tp in partitions):
                break
            await consumer.getmany(timeout_ms=FETCH_ROUND, max_records=1)
        ends = {tp: consumer.highwater(tp) for tp in partitions}
    except (KafkaError, OSError) as exc:
        raise BrokerUnavailable(f"backlog unknown: {type(exc).__name__}") from exc
    finally:
        await consumer.stop()
    unknown = [tp for tp, end in ends.items() if end is None]
    if unknown:
        raise BrokerUnavailable(f"no fetch answer for {len(unknown)} partitions")
    return [PartitionBacklog(tp, committed[tp], ends[tp] or 0) for tp in partitions]


async def wait_drained(
    *, bootstrap_servers: str, group_id: str, topics: Iterable[str], within: float
) -> list[PartitionBacklog]:
    """Wait until the group committed every record; return what is left (empty: drained)."""
    names = list(topics)
    deadline = time.monotonic() + within
    while True:
        left = [
            entry
            for entry in await group_backlog(
                bootstrap_servers=bootstrap_servers, group_id=group_id, topics=names
            )
            if entry.behind
        ]
        if not left or time.monotonic() >= deadline:
            return left
        await asyncio.sleep(DRAIN_POLL)

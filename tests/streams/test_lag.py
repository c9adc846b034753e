"""Consumer lag: the arithmetic, the gauge, and committed offsets read from the broker.

Tansu's ListOffsets does not give the log end (see streams/lag.py), so end
offsets come from a fake here; committed offsets are read from the real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from parley.settings import Settings
from streams.lag import CONSUMER_LAG, LagMonitor, group_lag, kafka_offsets, partition_lag
from tests.servers import create_topics

A0, A1 = TopicPartition("a", 0), TopicPartition("a", 1)


class FakeOffsets:
    def __init__(self, first: dict, end: dict, committed: dict) -> None:
        self.first, self.end, self.done = first, end, committed

    async def partitions(self, topic: str) -> list[TopicPartition]:
        return sorted(tp for tp in self.end if tp.topic == topic)

    async def log_offsets(self, partitions: list) -> tuple[dict, dict]:
        return self.first, self.end

    async def committed(self, group: str, partitions: list) -> dict:
        return self.done


def test_lag_is_end_minus_committed_or_minus_the_log_start() -> None:
    rows = partition_lag([A1, A0], first={A0: 0, A1: 40}, end={A0: 100, A1: 50}, committed={A0: 90})
    assert [(r.partition, r.committed, r.lag) for r in rows] == [(0, 90, 10), (1, None, 10)]
    # Retention removed what the group had not read: it restarts at the log start.
    [row] = partition_lag([A0], first={A0: 60}, end={A0: 100}, committed={A0: 10})
    assert row.lag == 40
    [row] = partition_lag([A0], first={A0: 0}, end={A0: 5}, committed={A0: 5})
    assert row.lag == 0


async def test_the_monitor_sets_the_gauge_per_partition(settings: Settings) -> None:
    visitor = settings.visitor_topic
    reader = FakeOffsets(
        first={TopicPartition(visitor, 0): 0, TopicPartition(visitor, 1): 0},
        end={TopicPartition(visitor, 0): 7, TopicPartition(visitor, 1): 3},
        committed={TopicPartition(visitor, 0): 2},
    )
    rows = await LagMonitor(settings=settings).measure(reader)
    assert [row.lag for row in rows] == [5, 3]
    assert CONSUMER_LAG.labels(visitor, "0")._value.get() == 5
    assert CONSUMER_LAG.labels(visitor, "1")._value.get() == 3


async def test_committed_offsets_come_from_the_broker(settings: Settings) -> None:
    await create_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(settings.visitor_topic, b"x", partition=1)
    finally:
        await producer.stop()
    tp = TopicPartition(settings.visitor_topic, 1)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.worker_id,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: OffsetAndMetadata(2, "")})
    finally:
        await consumer.stop()
    async with kafka_offsets(settings) as reader:
        partitions = await reader.partitions(settings.visitor_topic)
        assert len(partitions) == settings.topic_partitions
        assert await reader.committed(settings.worker_id, partitions) == {tp: 2}
        rows = await group_lag(reader, group=settings.worker_id, topics=[settings.visitor_topic])
    assert [row.committed for row in rows if row.partition == 1] == [2]


async def test_the_worker_task_exports_every_partition_until_cancelled(settings: Settings) -> None:
    await create_topics(settings)
    task = asyncio.create_task(LagMonitor(settings=settings, interval=0.1).run(), name="lag")
    try:
        deadline = time.monotonic() + 20
        wanted = {(settings.visitor_topic, str(p)) for p in range(settings.topic_partitions)}
        wanted |= {(settings.agent_topic, str(p)) for p in range(settings.topic_partitions)}
        while True:
            seen = {
                (sample.labels["topic"], sample.labels["partition"])
                for metric in CONSUMER_LAG.collect()
                for sample in metric.samples
            }
            if wanted <= seen:
                break
            assert time.monotonic() < deadline, f"missing {wanted - seen}"
            await asyncio.sleep(0.1)
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

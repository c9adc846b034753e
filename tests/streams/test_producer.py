"""The gateway's producer: partitions as Kafka does, and a send returns once confirmed."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from parley.settings import Settings
from streams.events import VisitorMessage
from streams.producer import KafkaEventProducer, KeyPartitioner


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_a_key_goes_where_kafkas_default_partitioner_sends_it(key: bytes, count: int) -> None:
    partitions = list(range(count))
    partitioner = KeyPartitioner(max_keys=3)
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert partitioner(key, partitions, partitions) == expected
    assert partitioner(key, partitions, partitions) == expected  # remembered


def test_remembered_hashes_stay_bounded_and_right() -> None:
    partitioner = KeyPartitioner(max_keys=10)
    partitions = list(range(8))
    for index in range(100):
        key = f"conversation-{index}".encode()
        assert partitioner(key, partitions, partitions) == DefaultPartitioner()(
            key, partitions, partitions
        )
    assert len(partitioner._hashes) <= 10


def test_keyless_sends_pick_an_available_partition() -> None:
    assert KeyPartitioner()(None, [0, 1, 2], [2]) == 2


async def test_messages_of_one_visitor_land_on_one_partition_in_order(settings: Settings) -> None:
    assert settings.kafka_bootstrap_servers
    topic = f"{settings.visitor_topic}.{uuid.uuid4().hex[:6]}"
    producer = KafkaEventProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        visitor_topic=topic,
        agent_topic=settings.agent_topic,
    )
    await producer.start()
    try:
        events = [
            VisitorMessage(
                project_id=1, visitor_uid="v-1", temp_id=str(uuid.uuid4()), content=str(index)
            )
            for index in range(5)
        ]
        for event in events:
            await producer.send_visitor_message(event)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or {0})
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        received: dict[int, list[bytes]] = {}
        while sum(len(values) for values in received.values()) < len(events):
            batch = await consumer.getmany(timeout_ms=5_000)
            assert batch, "the records did not arrive"
            for tp, records in batch.items():
                received.setdefault(tp.partition, []).extend(r.value for r in records)
    finally:
        await consumer.stop()
    assert len(received) == 1
    [values] = received.values()
    assert values == [event.to_json() for event in events]

"""``parley topics create|list|tail`` against the real broker."""

from __future__ import annotations

import json

from aiokafka import AIOKafkaProducer

from parley.settings import Settings
from streams.lag import kafka_offsets
from streams.topics import parley_topics
from tests.parley.test_cli import parley


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


async def test_create_makes_every_topic_once_with_its_partitions(settings: Settings) -> None:
    specs = parley_topics(settings)
    assert settings.agent_topic in {spec.name for spec in specs}
    first = parley(settings, "topics", "create")
    assert first.returncode == 0, first.stderr
    assert sorted(lines(first.stdout)[0]["created"]) == sorted(spec.name for spec in specs)
    again = lines(parley(settings, "topics", "create").stdout)[0]
    assert again["created"] == [] and sorted(again["existing"]) == sorted(s.name for s in specs)
    async with kafka_offsets(settings) as reader:
        for spec in specs:
            assert len(await reader.partitions(spec.name)) == spec.partitions, spec.name
    assert {spec.name: spec.partitions for spec in specs}[settings.dead_letter_topic] == 1
    assert all(spec.configs["retention.ms"] == str(spec.retention_ms) for spec in specs)


async def test_list_and_tail(settings: Settings) -> None:
    assert parley(settings, "topics", "create").returncode == 0
    listed = lines(parley(settings, "topics", "list").stdout)
    assert [row["topic"] for row in listed] == [spec.name for spec in parley_topics(settings)]
    visitor = listed[0]
    assert visitor["exists"] and visitor["partitions"] == settings.topic_partitions
    assert [o["partition"] for o in visitor["offsets"]] == list(range(settings.topic_partitions))
    assert visitor["group"] == settings.worker_id

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(
                settings.visitor_topic,
                value=json.dumps({"n": n}).encode(),
                key=b"k",
                headers=[("event-type", b"visitor.message")],
            )
        await producer.send_and_wait(settings.visitor_topic, value=b"not json", key=b"k")
    finally:
        await producer.stop()
    tailed = parley(
        settings, "topics", "tail", settings.visitor_topic, "--from-beginning", "--limit", "4"
    )
    assert tailed.returncode == 0, tailed.stderr
    records = lines(tailed.stdout)
    assert [r["value"] for r in records] == [{"n": 0}, {"n": 1}, {"n": 2}, "not json"]
    assert records[0]["headers"] == {"event-type": "visitor.message"}
    assert records[0]["key"] == "k" and records[0]["topic"] == settings.visitor_topic


def test_an_unreachable_broker_is_one_sentence(settings: Settings) -> None:
    result = parley(settings, "topics", "list", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1] == "parley: broker at 127.0.0.1:9 cannot be reached"
    )

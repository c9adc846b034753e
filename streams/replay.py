"""The dead-letter topic: show what the worker could not store, and replay it after a fix.

Replay sends each dead-lettered event back to the topic it came from (its
``source-topic`` header, see :mod:`streams.dead_letters`, or else the topic its
``type`` names), with its original key and event id, and commits its place in the dead-letter
topic under its own consumer group (``<PARLEY_WORKER_ID>.dead-letter-replay``),
so a second replay sends only what was dead-lettered since. Replaying twice
anyway is harmless: the store is idempotent by tempId, so each event is stored once.
A value that is not a Parley event at all would only be dead-lettered again,
so it is reported and skipped.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from parley.settings import Settings
from streams.dead_letters import HEADER_ERROR, HEADER_ERROR_CLASS, SOURCE_HEADERS
from streams.errors import BrokerUnavailable
from streams.events import AGENT_MESSAGE, VISITOR_MESSAGE, partition_key
from streams.security import KafkaSecurity
from streams.tail import IDLE_TIMEOUT, read_records, record_json, topic_consumer
from streams.topics import REQUEST_TIMEOUT

logger = logging.getLogger("parley.dead_letters")

HEADER_REPLAYED_FROM = "replayed-from"
# What the dead-lettering added; a replayed event goes back as the gateway sent it.
DROPPED_HEADERS = {HEADER_ERROR, HEADER_ERROR_CLASS, *SOURCE_HEADERS, HEADER_REPLAYED_FROM}


def replay_group(settings: Settings) -> str:
    return f"{settings.worker_id}.dead-letter-replay"


async def show(settings: Settings, *, limit: int | None) -> list[dict[str, Any]]:
    """Every dead-lettered record (oldest first) with its reason, as JSON objects."""
    async with topic_consumer(settings, settings.dead_letter_topic) as consumer:
        return [
            {**record_json(record), "error": _header(record.headers, HEADER_ERROR)}
            async for record in read_records(consumer, limit=limit, idle=IDLE_TIMEOUT)
        ]


def _header(headers: Any, name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return bytes(value).decode(errors="replace")
    return None


def replay_target(
    settings: Settings, value: bytes | None, source: str | None = None
) -> tuple[str, bytes] | str:
    """The topic and key to send ``value`` back to, or why it cannot be replayed."""
    try:
        body = json.loads(value or b"")
        kind = body["type"]
        key = partition_key(int(body["projectId"]), str(body["visitorUid"]))
    except (ValueError, KeyError, TypeError):
        return "not a Parley event"
    topics = {VISITOR_MESSAGE: settings.visitor_topic, AGENT_MESSAGE: settings.agent_topic}
    if kind not in topics:
        return f"unknown event type {kind!r}"
    if source is not None and source in topics.values():
        return source, key
    return topics[kind], key


async def replay(settings: Settings, *, from_beginning: bool = False) -> dict[str, Any]:
    """Send dead-lettered events back to their topics; returns what was done.

    ``from_beginning`` ignores the replay group's committed place (everything is
    sent again; the store still keeps each event once).
    """
    settings.require("kafka_bootstrap_servers")
    security = KafkaSecurity.from_settings(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        request_timeout_ms=REQUEST_TIMEOUT,
        client_id="parley-replay",
        **security.aiokafka_kwargs(),
    )
    try:
        await producer.start()
    except (KafkaError, OSError) as exc:
        await producer.stop()
        raise BrokerUnavailable("broker cannot be reached") from exc
    replayed = 0
    skipped: list[dict[str, Any]] = []
    try:
        async with topic_consumer(
            settings, settings.dead_letter_topic, group=replay_group(settings)
        ) as consumer:
            if from_beginning:
                await consumer.seek_to_beginning()
            async for record in read_records(consumer, limit=None, idle=IDLE_TIMEOUT):
                target = replay_target(
                    settings, record.value, _header(record.headers, SOURCE_HEADERS[0])
                )
                if isinstance(target, str):
                    skipped.append({"offset": record.offset, "reason": target})
                else:
                    topic, key = target
                    headers = [
                        (name, bytes(data))
                        for name, data in record.headers
                        if name not in DROPPED_HEADERS
                    ]
                    headers.append((HEADER_REPLAYED_FROM, str(record.offset).encode()))
                    await producer.send_and_wait(
                        topic, value=record.value, key=key, headers=headers
                    )
                    replayed += 1
                # Committed only after the broker confirmed the resend: at least once.
                await consumer.commit(
                    {
                        TopicPartition(record.topic, record.partition): OffsetAndMetadata(
                            record.offset + 1, ""
                        )
                    }
                )
    finally:
        await producer.stop()
    logger.info(
        "replayed %d dead-lettered events, skipped %d",
        replayed,
        len(skipped),
        extra={"action": "dead_letters.replay"},
    )
    return {"replayed": replayed, "skipped": skipped}

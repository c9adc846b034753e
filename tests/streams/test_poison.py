"""Poison records on the real broker, the Faust worker as a process: nothing stalls."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.embedded import free_port
from parley.settings import Settings
from persistence.directory import Directory
from persistence.models import messages
from streams.events import VisitorMessage
from tests.factories import uid
from tests.servers import Cluster, create_topics

pytestmark = pytest.mark.e2e

STORE_DEADLINE = 10.0  # seconds for the good records to be stored once produced


@pytest.fixture
async def cluster(settings: Settings, tmp_path: Path) -> AsyncIterator[Cluster]:
    await create_topics(settings)
    running = Cluster(settings, tmp_path)
    try:
        yield running
    finally:
        running.stop()


async def stored(engine: AsyncEngine) -> list[tuple[int, str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(messages.c.seq, messages.c.content, messages.c.temp_id).order_by("seq")
        )
        return [(row.seq, row.content, str(row.temp_id)) for row in rows]


async def dead_letters(
    settings: Settings, count: int
) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(
        settings.dead_letter_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    try:
        records = []
        async with asyncio.timeout(30):
            while len(records) < count:
                records.append(await consumer.getone())
        extra = await consumer.getmany(timeout_ms=500)
        assert not any(extra.values()), "more dead letters than poison records"
    finally:
        await consumer.stop()
    return [(r.key, r.value, {k: bytes(v) for k, v in r.headers}) for r in records]


async def test_poison_records_do_not_stall_the_worker(
    cluster: Cluster, engine: AsyncEngine, directory: Directory
) -> None:
    metrics_port = free_port()
    cluster.env["PARLEY_WORKER_METRICS_PORT"] = str(metrics_port)
    await cluster.worker()
    project = await directory.create_project(name="p")
    visitor = uid()
    settings = cluster.settings
    key = f"{project.id}:{visitor}".encode()

    def value(content: str, **extra: object) -> tuple[str, bytes]:
        temp_id = str(uuid.uuid4())
        event = VisitorMessage(
            project_id=project.id, visitor_uid=visitor, temp_id=temp_id, content="?"
        )
        # json.dumps escapes NUL and lone surrogates, as a client's JSON carries them.
        body = {**json.loads(event.to_json()), "content": content, **extra}
        return temp_id, json.dumps(body).encode()

    good = [value(f"good {i}") for i in range(8)]
    poison = [
        value("poison\u0000pill")[1],
        value("x", sessionMetadata={"referrer": "r", "urlHistory": [{"url": "\u0000"}]})[1],
        value("lone \ud800")[1],
        value("x", projectId=2**70)[1],
        b"not json at all",
        value("x", visitorUid=secrets.token_urlsafe(6000))[1],  # only PostgreSQL refuses it
    ]
    assert b"\\u0000" in poison[0] and b"\\ud800" in poison[2]
    records = [
        good[0][1], poison[0], good[1][1], poison[1], poison[2], good[2][1], good[3][1],
        poison[3], poison[4], good[4][1], good[4][1], poison[5], good[5][1], good[6][1],
        good[7][1],
    ]  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(
                settings.visitor_topic, value=record, key=key, headers=[("origin", b"test")]
            )
        produced = time.monotonic()
    finally:
        await producer.stop()

    expected = [(i + 1, f"good {i}", temp_id) for i, (temp_id, _) in enumerate(good)]
    while (rows := await stored(engine)) != expected:
        assert len(rows) <= len(expected) and rows == expected[: len(rows)], rows
        assert time.monotonic() - produced < STORE_DEADLINE, f"only {len(rows)} stored"
        await asyncio.sleep(0.1)
    print(f"good records stored {time.monotonic() - produced:.2f}s after the last was produced")

    letters = await dead_letters(settings, len(poison))
    assert sorted(value for _, value, _ in letters) == sorted(poison)
    by_value = {value: headers for _, value, headers in letters}
    assert by_value[poison[0]]["error"] == b"content contains a NUL character"
    assert by_value[poison[1]]["error"] == (
        b"sessionMetadata.urlHistory[0].url contains a NUL character"
    )
    assert by_value[poison[2]]["error"] == b"content contains a lone surrogate"
    assert by_value[poison[3]]["error"] == b"projectId is an integer out of range"
    assert by_value[poison[4]]["error"].startswith(b"not JSON")
    assert b"54000" in by_value[poison[5]]["error"]
    assert [by_value[p]["error-class"] for p in poison] == [b"invalid"] * 5 + [b"refused"]
    for letter_key, _, headers in letters:
        assert letter_key == key and headers["origin"] == b"test"
        assert headers["source-topic"] == settings.visitor_topic.encode()

    async with httpx.AsyncClient() as client:
        scraped = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    assert 'parley_agent_dead_letters_total{reason="invalid"} 5.0' in scraped
    assert 'parley_agent_dead_letters_total{reason="refused"} 1.0' in scraped

"""Dead letters: shown with their reason, replayed after a fix, stored once however often."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.settings import Settings
from persistence.directory import Directory
from persistence.models import messages
from streams.events import VisitorMessage
from tests.factories import uid
from tests.parley.test_cli import parley
from tests.servers import Cluster

pytestmark = pytest.mark.e2e


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


async def stored(engine: AsyncEngine, temp_id: str) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count()).select_from(messages).where(messages.c.temp_id == temp_id)
        )
    return int(count or 0)


async def wait_for(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("condition not met in time")


async def test_replay_after_a_fix_stores_each_event_once(
    cluster: Cluster, e2e_settings: Settings, directory: Directory, engine: AsyncEngine
) -> None:
    settings = e2e_settings
    await cluster.worker()
    existing = await directory.create_project(name="Acme")
    missing_id = existing.id + 1  # the next project created will have this id
    event = VisitorMessage(
        project_id=missing_id, visitor_uid=uid(), temp_id=str(uuid.uuid4()), content="hello"
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.visitor_topic, event.to_json(), key=event.key, headers=event.headers
        )
        await producer.send_and_wait(settings.dead_letter_topic, b"garbage", key=b"x")
    finally:
        await producer.stop()

    async def dead_lettered() -> bool:
        shown = lines(parley(settings, "dead-letters", "show").stdout)
        return any(r["value"] != "garbage" for r in shown)

    await wait_for(dead_lettered)
    shown = lines(parley(settings, "dead-letters", "show").stdout)
    [record] = [r for r in shown if r["value"] != "garbage"]
    assert record["value"]["tempId"] == event.temp_id
    assert f"project {missing_id}" in record["error"]
    assert await stored(engine, event.temp_id) == 0

    # The fix: the project now exists.
    fixed = await directory.create_project(name="Late")
    assert fixed.id == missing_id
    replay = parley(settings, "dead-letters", "replay")
    assert replay.returncode == 0, replay.stderr
    report = lines(replay.stdout)[0]
    assert report["replayed"] == 1
    assert [s["reason"] for s in report["skipped"]] == ["not a Parley event"]

    async def is_stored() -> bool:
        return await stored(engine, event.temp_id) == 1

    await wait_for(is_stored)
    # A second replay sends nothing new; replaying everything again stores nothing twice.
    assert lines(parley(settings, "dead-letters", "replay").stdout)[0]["replayed"] == 0
    again = lines(parley(settings, "dead-letters", "replay", "--from-beginning").stdout)[0]
    assert again["replayed"] == 1
    await asyncio.sleep(3.0)  # the worker's batch window is milliseconds; this is ample
    assert await stored(engine, event.temp_id) == 1

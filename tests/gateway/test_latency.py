"""End-to-end latency: acceptedAt travels event → store → outbox → gateway histogram."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.fanout import Fanout
from persistence.directory import Directory
from persistence.models import outbox
from persistence.store import MessageStore
from streams.agent import decode_visitor_message
from streams.events import VisitorMessage
from tests.factories import incoming, uid
from tests.fakes import RecordingEmitter
from tests.gateway.test_fanout import MESSAGE

HISTOGRAM = "parley_gateway_end_to_end_seconds"


def observed() -> tuple[float, float]:
    count = REGISTRY.get_sample_value(f"{HISTOGRAM}_count") or 0.0
    total = REGISTRY.get_sample_value(f"{HISTOGRAM}_sum") or 0.0
    return count, total


def relayed(event_id: int, accepted_at: object) -> str:
    body = {"eventId": event_id, "conversationId": 3, "type": "message.created"}
    return json.dumps({**body, "message": MESSAGE, "acceptedAt": accepted_at})


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_emission_records_the_time_since_acceptance() -> None:
    fanout = Fanout(emitter=RecordingEmitter())
    count, total = observed()
    accepted = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1.5)
    await fanout.deliver(relayed(1, iso(accepted)))
    new_count, new_total = observed()
    assert new_count == count + 1
    assert 1.5 <= new_total - total < 10
    await fanout.deliver(relayed(1, iso(accepted)))  # a repeat is not emitted, not measured
    assert observed()[0] == count + 1


async def test_missing_or_bad_timestamps_are_not_measured() -> None:
    fanout = Fanout(emitter=RecordingEmitter())
    count, _ = observed()
    for event_id, accepted_at in enumerate([None, "", "yesterday", "2026-01-01T00:00:00", 5]):
        await fanout.deliver(relayed(100 + event_id, accepted_at))
    assert observed()[0] == count


async def test_the_store_puts_accepted_at_beside_the_message(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    event = VisitorMessage(
        project_id=project.id, visitor_uid=uid(), temp_id=incoming(1, "x").temp_id, content="hi"
    )
    message = decode_visitor_message(event.to_json())
    assert message.accepted_at == event.accepted_at
    other = dataclasses.replace(incoming(project.id, uid()), accepted_at=None)
    await MessageStore(engine=engine).append([message, other])
    async with engine.connect() as conn:
        payloads = (await conn.execute(sa.select(outbox.c.payload).order_by(outbox.c.id))).scalars()
        by_temp = {p["message"]["tempId"]: p for p in payloads}
    assert by_temp[event.temp_id]["acceptedAt"] == event.accepted_at
    assert "acceptedAt" not in by_temp[event.temp_id]["message"]  # clients never see it
    assert by_temp[other.temp_id]["acceptedAt"] is None

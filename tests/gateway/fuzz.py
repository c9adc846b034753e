"""Shared pieces of the fuzz campaign: hostile values, what a clear answer is, and the
checks that a refused call stored nothing."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.settings import Settings
from persistence.models import metadata

# Per event or route. The whole campaign (10 events, 6 routes) runs in about a
# minute on a quiet machine; raise it locally for a longer hunt.
EXAMPLES = 20
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        # One gateway serves every example of a test: that is the point.
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
ACK_TIMEOUT = 5.0  # seconds; a call that is never answered fails the campaign
# Error codes a refusal may carry. "unavailable" is not among them: every service is
# up, so it would mean a database error slipped through as an outage.
CODES = {"invalid_payload", "not_identified", "forbidden", "not_found", "invalid_token"}
HTTP_CODES = CODES | {"payload_too_large", "conflict"}

ODD_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "x\ud83d",
    "²",
    "١٢",
    "\u202eevil\u202c",
    "\u200f\u05e9\u05dc\u05d5\u05dd",
    "👋🏽",
    "\ufeff",
    "null",
    "0",
    "-1",
    "9" * 30,
    "\n\t\r",
    "%00",
]
BIG_NUMBERS = [2**31, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, 1e308]


def relaxed(settings: Settings) -> Settings:
    """The abuse limits out of the way: the campaign sends far more than a client may."""
    return settings.replace(
        rate_limit_count=1_000_000,
        socket_event_burst=1_000_000.0,
        socket_event_rate=1_000_000.0,
        connect_burst=1_000_000,
        connect_rate=1_000_000.0,
        new_visitor_limit=1_000_000,
        context_updates_per_minute=1_000_000,
    )


def nested(depth: int) -> Any:
    value: Any = "x"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


# Large but under the 1 MB packet limit, so each still deserves an answer.
HUGE = [
    "x" * 900_000,
    ["y"] * 50_000,
    nested(400),
    {"k" * 10_000: 1},
    list(range(20_000)),
    {str(i): i for i in range(5_000)},
]

texts = st.sampled_from(ODD_TEXT) | st.text(max_size=30)
numbers = (
    st.integers(min_value=-5, max_value=5)
    | st.sampled_from(BIG_NUMBERS)
    | st.floats(allow_nan=True, allow_infinity=True)
)
scalars = st.none() | st.booleans() | numbers | texts | st.binary(max_size=16)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
hostile = values | st.sampled_from(HUGE)
MISSING = object()


def payloads(valid: Mapping[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Anything at all, or an object whose fields are each valid, hostile or missing,
    with extra fields now and then."""
    fields = {
        name: st.one_of(strategy, strategy, hostile, st.just(MISSING))
        for name, strategy in valid.items()
    }

    def assemble(chosen: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        body = {name: value for name, value in chosen.items() if value is not MISSING}
        return {**extra, **body}

    objects = st.builds(
        assemble, st.fixed_dictionaries(fields), st.dictionaries(texts, values, max_size=2)
    )
    return st.one_of(objects, objects, objects, hostile)


def temp_ids() -> st.SearchStrategy[str]:
    return st.uuids(version=4).map(str)


def encoded_size(payload: Any) -> int:
    """About the bytes of the Socket.IO packet carrying ``payload`` (binary counts apart)."""
    return len(json.dumps(payload, default=lambda _: "").encode("utf-8", "surrogatepass"))


def assert_answered(ack: Any, *, accepted: Callable[[dict[str, Any]], bool]) -> bool:
    """A clear answer: accepted, or ``{ok: false, error: {code, message}}``. Returns accepted."""
    assert isinstance(ack, dict), ack
    if ack.get("ok") is False:
        error = ack.get("error")
        assert isinstance(error, dict), ack
        assert error.get("code") in CODES, ack
        assert isinstance(error.get("message"), str) and error["message"], ack
        return False
    assert accepted(ack), ack
    return True


async def snapshot(engine: AsyncEngine) -> list[tuple[str, list[str]]]:
    """Every row of every table, to prove a refused call changed nothing."""
    async with engine.connect() as conn:
        tables = []
        for table in metadata.sorted_tables:
            rows = (await conn.execute(sa.select(table))).all()
            tables.append((table.name, sorted(repr(tuple(row)) for row in rows)))
        return tables


async def topic_temp_ids(bootstrap: str, topic: str) -> list[str]:
    """The tempIds of every record on ``topic`` (the gateway produced only what it accepted)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            await consumer.topics()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[str] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(*partitions, timeout_ms=1_000)
            for records in batches.values():
                found.extend(json.loads(record.value)["tempId"] for record in records)
        return found
    finally:
        await consumer.stop()

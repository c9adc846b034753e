"""One batch of raw topic records through the agent's handler, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.backoff import Backoff
from persistence.directory import Directory
from persistence.models import messages
from persistence.store import MessageStore
from streams.agent import BatchHandler, decode_visitor_message
from streams.batching import REFUSED, BatchStorer
from streams.dead_letters import INVALID, DeadLetters, RawEvent
from streams.errors import WorkerStopping
from streams.events import VisitorMessage
from tests.factories import uid


class RecordingSink:
    """A :class:`streams.dead_letters.DeadLetterSink` that keeps what it was given."""

    def __init__(self, *, fail: bool = False) -> None:
        self.sent: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
        self.fail = fail

    async def send(
        self, *, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        if self.fail:
            raise OSError("the fake broker is down")
        self.sent.append((key, value, dict(headers)))


def fast() -> Backoff:
    return Backoff(initial=0.01, maximum=0.02)


def dead_letter_count(kind: str) -> float:
    return REGISTRY.get_sample_value("parley_agent_dead_letters_total", {"reason": kind}) or 0.0


def handler(engine: AsyncEngine, sink: RecordingSink, stopping: list[bool]) -> BatchHandler:
    return BatchHandler(
        decode=decode_visitor_message,
        storer=BatchStorer(
            store=MessageStore(engine=engine), stopping=lambda: stopping[0], backoff=fast
        ),
        dead_letters=DeadLetters(sink=sink, stopping=lambda: stopping[0], backoff=fast),
    )


def record(value: bytes, offset: int) -> RawEvent:
    return RawEvent(
        value=value,
        key=b"k",
        headers=[("event-id", f"e{offset}".encode())],
        topic="t",
        partition=0,
        offset=offset,
    )


async def test_poison_records_are_dead_lettered_and_the_rest_stored_in_order(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    visitor = uid()

    def good(content: str, **extra: object) -> bytes:
        event = VisitorMessage(
            project_id=project.id, visitor_uid=visitor, temp_id=str(uuid.uuid4()), content="?"
        )
        # json.dumps escapes NUL and surrogates (\u0000, \ud800), as a client's JSON would.
        return json.dumps({**json.loads(event.to_json()), "content": content, **extra}).encode()

    values = [
        good("one"),
        b"{not json",
        good("poison\u0000pill"),
        good("two"),
        good("x", sessionMetadata={"referrer": "\u0000"}),
        good("lone \ud800"),
        good("x", projectId=2**70),
        good("three"),
        good("x", visitorUid=secrets.token_urlsafe(6000)),  # passes decoding, refused by PG
        good("four"),
    ]
    sink = RecordingSink()
    before = {kind: dead_letter_count(kind) for kind in (INVALID, REFUSED)}

    await handler(engine, sink, [False]).handle(
        [record(v, offset) for offset, v in enumerate(values)]
    )

    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(messages.c.seq, messages.c.content))).all()
    assert sorted(rows) == [(1, "one"), (2, "two"), (3, "three"), (4, "four")]
    offsets = {int(headers["source-offset"]): headers for _, _, headers in sink.sent}
    assert sorted(offsets) == [1, 2, 4, 5, 6, 8]
    assert {offset: h["error-class"] for offset, h in offsets.items()} == {
        1: b"invalid",
        2: b"invalid",
        4: b"invalid",
        5: b"invalid",
        6: b"invalid",
        8: b"refused",
    }
    assert offsets[1]["error"].startswith(b"not JSON")
    assert offsets[2]["error"] == b"content contains a NUL character"
    assert offsets[4]["error"] == b"sessionMetadata.referrer contains a NUL character"
    assert offsets[5]["error"] == b"content contains a lone surrogate"
    assert offsets[6]["error"] == b"projectId is an integer out of range"
    assert b"54000" in offsets[8]["error"]
    for key, value, headers in sink.sent:
        offset = int(headers["source-offset"])
        assert key == b"k" and value == values[offset]  # the record as it was
        assert headers["event-id"] == f"e{offset}".encode()
        assert headers["source-topic"] == b"t" and headers["source-partition"] == b"0"
    assert dead_letter_count(INVALID) - before[INVALID] == 5
    assert dead_letter_count(REFUSED) - before[REFUSED] == 1


async def test_an_unconfirmed_dead_letter_holds_the_batch_until_the_stop(
    engine: AsyncEngine,
) -> None:
    sink = RecordingSink(fail=True)
    stopping = [False]
    task_handler = handler(engine, sink, stopping)
    task = asyncio.create_task(task_handler.handle([record(b"{not json", 0)]))
    await asyncio.sleep(0.3)
    assert not task.done()  # the source cannot be acked before its dead letter is written
    stopping[0] = True
    with pytest.raises(WorkerStopping):
        async with asyncio.timeout(2):
            await task

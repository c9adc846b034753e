"""Storing batches against a real PostgreSQL: outages waited out, refused events split out."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.embedded import free_port
from persistence.backoff import Backoff
from persistence.database import create_engine
from persistence.directory import Directory
from persistence.errors import DatabaseUnavailable, TransientFailure
from persistence.models import messages, outbox
from persistence.store import AppendResult, IncomingMessage, MessageStore
from streams.batching import CONTENDED, REFUSED, REJECTED, TRANSIENT_ATTEMPTS, BatchStorer
from streams.errors import WorkerStopping
from streams.stopping import STOP_POLL_INTERVAL
from tests.factories import incoming, uid


def fast() -> Backoff:
    return Backoff(initial=0.01, maximum=0.02)


def never() -> bool:
    return False


class CountingStore:
    """The real store behind our Store interface, failing as told, counting calls."""

    def __init__(
        self,
        store: MessageStore,
        *,
        unavailable: int = 0,
        transient: int = 0,
        contended: str | None = None,
    ) -> None:
        self.store = store
        self.calls: list[int] = []
        self.unavailable = unavailable
        self.transient = transient
        self.contended = contended  # content of a message whose batches always race

    async def append(self, batch: Sequence[IncomingMessage]) -> AppendResult:
        self.calls.append(len(batch))
        if self.unavailable:
            self.unavailable -= 1
            raise DatabaseUnavailable("the fake says so")
        if self.transient:
            self.transient -= 1
            raise TransientFailure("deadlock (fake)")
        if self.contended is not None and any(m.content == self.contended for m in batch):
            raise TransientFailure("deadlock (fake, every time)")
        return await self.store.append(batch)


async def contents(engine: AsyncEngine) -> list[tuple[int, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(messages.c.seq, messages.c.content).order_by("seq"))
        return [(row.seq, row.content) for row in rows]


async def test_refused_events_are_split_out_and_the_rest_is_stored_in_order(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    visitor = uid()
    batch = [incoming(project.id, visitor, f"good {i}") for i in range(20)]
    poison = {
        3: incoming(project.id, visitor, "nul \x00 in content"),
        4: incoming(project.id, visitor, "meta", session_metadata={"referrer": "nul \x00"}),
        11: incoming(project.id, visitor, "lone \ud800 surrogate"),
        15: incoming(2**70, visitor, "project beyond bigint"),
        19: incoming(project.id, secrets.token_urlsafe(6000), "uid too long to index"),
    }
    for position, message in sorted(poison.items()):
        batch.insert(position, message)
    counting = CountingStore(MessageStore(engine=engine))
    storer = BatchStorer(store=counting, stopping=never, backoff=fast)

    outcome = await storer.store(batch)

    good = [f"good {i}" for i in range(20)]
    assert [m["content"] for m in outcome.stored] == good
    assert await contents(engine) == list(enumerate(good, start=1))
    async with engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(outbox)) == 20
    assert [r.message for r in outcome.refused] == [poison[p] for p in sorted(poison)]
    assert {r.kind for r in outcome.refused} == {REFUSED}
    reasons = [r.reason for r in outcome.refused]
    for code, why in zip(["22021", "22P05", "22000", "22000", "54000"], reasons, strict=True):
        assert code in why
    # Bisection: about 2 log2(n) transactions per refused event, not one per event.
    assert len(counting.calls) < 50


async def test_unknown_projects_come_back_rejected_without_a_split(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    counting = CountingStore(MessageStore(engine=engine))
    storer = BatchStorer(store=counting, stopping=never, backoff=fast)
    ghost = incoming(99_999, uid(), "nobody's")

    outcome = await storer.store([incoming(project.id, uid(), "a"), ghost])

    assert [m["content"] for m in outcome.stored] == ["a"]
    assert [(r.message, r.reason, r.kind) for r in outcome.refused] == [
        (ghost, "project 99999 does not exist", REJECTED)
    ]
    assert counting.calls == [2]


async def test_an_unavailable_database_is_waited_for_without_splitting(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    counting = CountingStore(MessageStore(engine=engine), unavailable=12)
    storer = BatchStorer(store=counting, stopping=never, backoff=fast, transient_attempts=2)

    outcome = await storer.store([incoming(project.id, uid(), f"m{i}") for i in range(4)])

    assert len(outcome.stored) == 4 and outcome.refused == []
    assert counting.calls == [4] * 13  # the whole batch every time, never split


async def test_transient_failures_are_retried_then_treated_as_refusals(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    visitor = uid()
    recovering = CountingStore(MessageStore(engine=engine), transient=TRANSIENT_ATTEMPTS - 1)
    storer = BatchStorer(store=recovering, stopping=never, backoff=fast)
    outcome = await storer.store([incoming(project.id, visitor, "raced once")])
    assert [m["content"] for m in outcome.stored] == ["raced once"]
    assert recovering.calls == [1] * TRANSIENT_ATTEMPTS

    stuck = CountingStore(MessageStore(engine=engine), contended="always races")
    storer = BatchStorer(store=stuck, stopping=never, backoff=fast)
    batch = [incoming(project.id, visitor, c) for c in ("before", "always races", "after")]
    outcome = await storer.store(batch)
    assert [m["content"] for m in outcome.stored] == ["before", "after"]
    assert [(r.message.content, r.kind) for r in outcome.refused] == [("always races", CONTENDED)]
    assert [seq for seq, _ in await contents(engine)] == [1, 2, 3]


async def test_a_stop_during_an_outage_ends_the_retries_without_storing() -> None:
    # A real outage: nothing listens on this port, every attempt is refused.
    engine = create_engine(f"postgresql://parley@127.0.0.1:{free_port()}/none", pool_size=1)
    stopped = False
    storer = BatchStorer(
        store=MessageStore(engine=engine), stopping=lambda: stopped, backoff=Backoff
    )
    task = asyncio.create_task(storer.store([incoming(1, uid(), "pending")]))
    try:
        await asyncio.sleep(1.0)
        assert not task.done()  # still retrying: an outage is waited out
        stopped = True
        began = time.monotonic()
        with pytest.raises(WorkerStopping):
            async with asyncio.timeout(5):
                await task
        assert time.monotonic() - began < STOP_POLL_INTERVAL + 1.0
    finally:
        task.cancel()
        await engine.dispose()

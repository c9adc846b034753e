"""Claiming, publishing, parking and ordering of outbox rows."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.database import create_engine
from persistence.directory import Directory
from persistence.models import outbox
from persistence.outbox import Outbox, PublishUnavailable
from persistence.store import MessageStore
from tests.factories import incoming, uid
from tests.fakes import RecordingPublisher


async def seed(engine: AsyncEngine, directory: Directory, visitors: int, each: int) -> None:
    project = await directory.create_project(name="p")
    store = MessageStore(engine=engine)
    names = [uid() for _ in range(visitors)]
    for round_ in range(each):
        await store.append([incoming(project.id, name, f"{name}:{round_}") for name in names])


async def test_publishes_in_order_and_deletes(engine: AsyncEngine, directory: Directory) -> None:
    await seed(engine, directory, visitors=2, each=3)
    outbox = Outbox(engine=engine)
    publisher = RecordingPublisher()

    report = await outbox.relay_batch(publisher, batch_size=100, max_attempts=3)

    assert report.published == 6
    assert [e["eventId"] for e in publisher.events] == sorted(
        e["eventId"] for e in publisher.events
    )
    assert {e["type"] for e in publisher.events} == {"message.created"}
    assert await outbox.pending() == 0


async def test_unavailable_target_keeps_rows_uncounted(
    engine: AsyncEngine, directory: Directory
) -> None:
    await seed(engine, directory, visitors=1, each=2)
    outbox = Outbox(engine=engine)

    class Down:
        async def publish(self, message: str) -> None:
            raise PublishUnavailable("down")

    with pytest.raises(PublishUnavailable):
        await outbox.relay_batch(Down(), batch_size=100, max_attempts=1)
    assert await outbox.pending() == 2
    assert await outbox.parked() == []


async def test_failing_row_is_parked_after_max_attempts_and_retryable(
    engine: AsyncEngine, directory: Directory
) -> None:
    await seed(engine, directory, visitors=1, each=1)
    outbox = Outbox(engine=engine)
    failing = RecordingPublisher(fail_times=3)

    for _ in range(3):
        await outbox.relay_batch(failing, batch_size=100, max_attempts=3)

    parked = await outbox.parked()
    assert len(parked) == 1
    assert parked[0].attempts == 3
    assert "refused by the fake" in (parked[0].last_error or "")
    assert await outbox.pending() == 0

    assert await outbox.retry_parked() == 1
    await outbox.relay_batch(failing, batch_size=100, max_attempts=3)
    assert len(failing.events) == 1
    assert await outbox.parked() == []


async def test_failed_row_holds_back_later_rows_of_its_conversation(
    engine: AsyncEngine, directory: Directory
) -> None:
    await seed(engine, directory, visitors=1, each=3)
    publisher = RecordingPublisher(fail_times=1)
    outbox = Outbox(engine=engine)

    report = await outbox.relay_batch(publisher, batch_size=100, max_attempts=5)
    assert report.published == 0 and report.failed == 1
    await outbox.relay_batch(publisher, batch_size=100, max_attempts=5)
    assert [e["message"]["seq"] for e in publisher.events] == [1, 2, 3]


@pytest.mark.parametrize("batch_size", [3, 7, 16])
async def test_two_relays_never_reorder_a_conversation(
    engine: AsyncEngine, directory: Directory, batch_size: int
) -> None:
    await seed(engine, directory, visitors=5, each=20)
    log: list[dict[str, object]] = []

    class Shared(RecordingPublisher):
        async def publish(self, message: str) -> None:
            await super().publish(message)
            log.append(self.events[-1])

    url = str(engine.url.render_as_string(hide_password=False))
    engines = [create_engine(url, pool_size=2) for _ in range(2)]

    async def relay(own: AsyncEngine) -> None:
        outbox = Outbox(engine=own)
        publisher = Shared(delay=0.001)
        idle = 0
        while idle < 3:
            report = await outbox.relay_batch(publisher, batch_size=batch_size, max_attempts=3)
            idle = idle + 1 if report.claimed == 0 else 0
            await asyncio.sleep(0)

    try:
        await asyncio.gather(*(relay(own) for own in engines))
    finally:
        for own in engines:
            await own.dispose()

    assert len(log) == 100
    by_conversation: dict[object, list[int]] = {}
    for event in log:
        message = event["message"]
        assert isinstance(message, dict)
        by_conversation.setdefault(message["conversationId"], []).append(message["seq"])
    for seqs in by_conversation.values():
        assert seqs == list(range(1, 21))


async def test_rows_past_another_relays_row_wait_their_turn(
    engine: AsyncEngine, directory: Directory
) -> None:
    """Another relay holds seq 2: this relay may send seq 1, but not 3 and 4 yet."""
    await seed(engine, directory, visitors=1, each=4)
    async with engine.connect() as conn:
        ids = (await conn.execute(sa.select(outbox.c.id).order_by(outbox.c.id))).scalars().all()
    publisher = RecordingPublisher()
    relay = Outbox(engine=engine)

    async with engine.connect() as other_relay:
        await other_relay.execute(
            sa.select(outbox.c.id).where(outbox.c.id == ids[1]).with_for_update()
        )
        report = await relay.relay_batch(publisher, batch_size=10, max_attempts=3)
        assert [e["message"]["seq"] for e in publisher.events] == [1]
        assert report.deferred == 2
        await other_relay.rollback()

    await relay.relay_batch(publisher, batch_size=10, max_attempts=3)
    assert [e["message"]["seq"] for e in publisher.events] == [1, 2, 3, 4]

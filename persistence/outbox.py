"""The outbox table: claim unpublished rows, publish them in order, delete or park them.

Rows are claimed with ``FOR UPDATE SKIP LOCKED``, never by "highest id seen", so a
row whose transaction commits late is still found. When several relays run, a
relay publishes a conversation's rows only as far as it holds an unbroken run
from that conversation's oldest pending row; past a row another relay holds,
it leaves the rest to a later round, so one conversation's events are never
reordered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from persistence.errors import PersistenceError, wrap_errors
from persistence.models import outbox

ERROR_LENGTH = 500  # characters of a publish error kept on a row
OUTBOX_CHANNEL = "parley_outbox"  # the NOTIFY channel the relay LISTENs on

# Event types, as relayed (the ``type`` field) and as stored (``event_type``).
MESSAGE_CREATED = "message.created"
CONVERSATION_UPDATED = "conversation.updated"
MESSAGES_READ = "messages.read"
MESSAGES_DELIVERED = "messages.delivered"
CONTEXT_UPDATED = "context.updated"


class PublishUnavailable(PersistenceError):
    """The publish target is unreachable or refuses every publish alike (an outage).

    The whole batch is retried later, uncounted against its rows.
    """


class Publisher(Protocol):
    """Where relayed events go (a Redis channel in production)."""

    async def publish(self, message: str) -> None: ...


@runtime_checkable
class BatchPublisher(Publisher, Protocol):
    """A publisher that takes a whole round at once; a failure is an outage (raise
    :class:`PublishUnavailable`), and the round is retried: receivers drop repeats."""

    async def publish_many(self, messages: Sequence[str]) -> None: ...


async def _publish_each(
    publisher: Publisher, rows: Sequence[Any]
) -> tuple[list[int], list[tuple[Any, str]], int]:
    """One publish per row: the ids published, the rows that failed, the rows held back."""
    published: list[int] = []
    failures: list[tuple[Any, str]] = []
    blocked: set[int] = set()
    skipped = 0
    for row in rows:
        if row.conversation_id in blocked:
            skipped += 1
            continue
        try:
            await publisher.publish(row.body)
        except PublishUnavailable:
            raise
        except Exception as exc:
            failures.append((row, f"{type(exc).__name__}: {exc}"[:ERROR_LENGTH]))
            # Later events of this conversation must not overtake this one.
            blocked.add(row.conversation_id)
            continue
        published.append(row.id)
    return published, failures, skipped


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchReport:
    claimed: int
    published: int
    deferred: int  # rows left for a later round to keep a conversation's order
    failed: int
    parked: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParkedRow:
    id: int
    conversation_id: int
    event_type: str
    attempts: int
    last_error: str | None


async def record_events(
    conn: AsyncConnection, events: Sequence[tuple[int, dict[str, Any]]]
) -> None:
    """Add ``(conversation_id, payload)`` events in the caller's transaction, then NOTIFY.

    Every payload carries ``type``, ``projectId`` and ``conversationId``; the relay
    adds ``eventId``. NOTIFY is delivered at commit, so the relay never wakes early.
    """
    if not events:
        return
    await conn.execute(
        outbox.insert(),
        [
            {"conversation_id": conversation_id, "event_type": payload["type"], "payload": payload}
            for conversation_id, payload in events
        ],
    )
    await conn.execute(sa.select(sa.func.pg_notify(OUTBOX_CHANNEL, "")))


# One statement claims a batch and says which rows may go out now. A claimed row
# may go unless an earlier pending row of its conversation is not ours (another
# relay holds it): per conversation, ``stop_at`` is the first such row. The wire
# form is built here too, so the relay never decodes and re-encodes a payload.
# The claim is narrow (no payload), and the heads come from one pass over the
# pending ids up to the last claimed one (the claimed ones, and whatever other
# relays hold among them), so the cost stays proportional to the batch whatever
# plan PostgreSQL picks, even before the table was analyzed.
CLAIM = sa.text(
    """
    WITH claimed AS MATERIALIZED (
        SELECT id, conversation_id, attempts
        FROM outbox
        WHERE parked_at IS NULL
        ORDER BY id
        LIMIT :batch_size
        FOR UPDATE SKIP LOCKED
    ),
    heads AS (
        SELECT o.conversation_id, min(o.id) AS stop_at
        FROM outbox o
        WHERE o.parked_at IS NULL
          AND o.id <= (SELECT max(id) FROM claimed)
          AND o.conversation_id IN (SELECT conversation_id FROM claimed)
          AND o.id NOT IN (SELECT id FROM claimed)
        GROUP BY o.conversation_id
    )
    SELECT c.id, c.conversation_id, c.attempts,
           h.stop_at IS NULL OR c.id < h.stop_at AS in_order,
           CAST(jsonb_build_object('eventId', c.id, 'conversationId', c.conversation_id)
                || p.payload AS text) AS body
    FROM claimed c
    LEFT JOIN heads h ON h.conversation_id = c.conversation_id
    JOIN outbox p ON p.id = c.id
    ORDER BY c.id
    """
)

DELETE_PUBLISHED = sa.text("DELETE FROM outbox WHERE id = ANY(CAST(:ids AS bigint[]))")


class Outbox:
    """One relay round at a time; see the module docstring for the ordering rule.

    A publisher with ``publish_many`` (:class:`BatchPublisher`) gets a round's
    events in one call, one round trip; any failure of it is an outage of the
    whole round. Other publishers get one ``publish`` per row, and a row whose
    publish fails is counted against that row (and parked in the end).
    """

    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    async def relay_batch(
        self, publisher: Publisher, *, batch_size: int, max_attempts: int
    ) -> BatchReport:
        async with wrap_errors(), self._engine.begin() as conn:
            claimed = (await conn.execute(CLAIM, {"batch_size": batch_size})).all()
            if not claimed:
                return BatchReport(claimed=0, published=0, deferred=0, failed=0, parked=0)
            ready = [row for row in claimed if row.in_order]
            deferred = len(claimed) - len(ready)
            failures: list[tuple[Any, str]] = []
            if isinstance(publisher, BatchPublisher):
                await publisher.publish_many([row.body for row in ready])
                published = [row.id for row in ready]
            else:
                published, failures, skipped = await _publish_each(publisher, ready)
                deferred += skipped
            if published:
                await conn.execute(DELETE_PUBLISHED, {"ids": published})
            parked = 0
            for row, error in failures:
                attempts = row.attempts + 1
                park = attempts >= max_attempts
                parked += park
                await conn.execute(
                    outbox.update()
                    .where(outbox.c.id == row.id)
                    .values(
                        attempts=attempts,
                        last_error=error,
                        parked_at=sa.func.now() if park else None,
                    )
                )
        return BatchReport(
            claimed=len(claimed),
            published=len(published),
            deferred=deferred,
            failed=len(failures),
            parked=parked,
        )

    async def pending(self) -> int:
        async with wrap_errors(), self._engine.connect() as conn:
            count = await conn.scalar(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.parked_at.is_(None))
            )
        return int(count or 0)

    async def parked(self) -> list[ParkedRow]:
        async with wrap_errors(), self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(outbox).where(outbox.c.parked_at.is_not(None)).order_by(outbox.c.id)
                )
            ).all()
        return [
            ParkedRow(
                id=row.id,
                conversation_id=row.conversation_id,
                event_type=row.event_type,
                attempts=row.attempts,
                last_error=row.last_error,
            )
            for row in rows
        ]

    async def retry_parked(self, ids: list[int] | None = None) -> int:
        """Put parked rows back in line (all of them when ``ids`` is None)."""
        condition: sa.ColumnElement[bool] = outbox.c.parked_at.is_not(None)
        if ids is not None:
            condition = sa.and_(condition, outbox.c.id.in_(ids))
        async with wrap_errors(), self._engine.begin() as conn:
            result = await conn.execute(
                outbox.update().where(condition).values(parked_at=None, attempts=0)
            )
        return int(result.rowcount or 0)

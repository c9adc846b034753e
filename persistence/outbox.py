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
import json
from collections.abc import Sequence
from typing import Any, Protocol

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


def encode_event(row: Any) -> str:
    """The wire form of a relayed event; ``eventId`` lets receivers drop repeats."""
    body = {"eventId": row.id, "conversationId": row.conversation_id, **row.payload}
    return json.dumps(body, separators=(",", ":"))


class Outbox:
    """One relay round at a time; see the module docstring for the ordering rule."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    async def relay_batch(
        self, publisher: Publisher, *, batch_size: int, max_attempts: int
    ) -> BatchReport:
        async with wrap_errors(), self._engine.begin() as conn:
            claimed = (
                await conn.execute(
                    sa.select(outbox)
                    .where(outbox.c.parked_at.is_(None))
                    .order_by(outbox.c.id)
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not claimed:
                return BatchReport(claimed=0, published=0, deferred=0, failed=0, parked=0)

            publishable = await self._in_order(conn, claimed)

            published: list[int] = []
            failures: list[tuple[Any, str]] = []
            deferred = 0
            blocked: set[int] = set()
            for row in claimed:
                if row.id not in publishable or row.conversation_id in blocked:
                    deferred += 1
                    continue
                try:
                    await publisher.publish(encode_event(row))
                except PublishUnavailable:
                    raise
                except Exception as exc:
                    failures.append((row, f"{type(exc).__name__}: {exc}"[:ERROR_LENGTH]))
                    # Later events of this conversation must not overtake this one.
                    blocked.add(row.conversation_id)
                    continue
                published.append(row.id)

            if published:
                await conn.execute(outbox.delete().where(outbox.c.id.in_(published)))
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

    async def _in_order(self, conn: AsyncConnection, claimed: Sequence[Any]) -> set[int]:
        """The claimed ids that may go out now without overtaking another relay's rows.

        Per conversation, walk its pending rows in id order (rows locked by other
        relays are still visible) and keep ours up to the first one we do not hold.
        """
        ours = {row.id for row in claimed}
        conversations = {row.conversation_id for row in claimed}
        pending = await conn.execute(
            sa.select(outbox.c.conversation_id, outbox.c.id)
            .where(
                outbox.c.parked_at.is_(None),
                outbox.c.conversation_id.in_(conversations),
                outbox.c.id <= max(ours),
            )
            .order_by(outbox.c.id)
        )
        allowed: set[int] = set()
        stopped: set[int] = set()
        for conversation, row_id in pending:
            if conversation in stopped:
                continue
            if row_id in ours:
                allowed.add(row_id)
            else:
                stopped.add(conversation)
        return allowed

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

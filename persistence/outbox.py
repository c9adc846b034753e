"""The outbox table: claim unpublished rows, publish them in order, delete or park them.

Rows are claimed with ``FOR UPDATE SKIP LOCKED``, never by "highest id seen", so a
row whose transaction commits late is still found. When several relays run, a
relay publishes a conversation's rows only if it holds that conversation's
oldest pending row; otherwise another relay is mid-way through earlier events of
that conversation and this relay leaves the rest to a later round, so one
conversation's events are never reordered.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.errors import PersistenceError, wrap_errors
from persistence.models import outbox

ERROR_LENGTH = 500  # characters of a publish error kept on a row


class PublishUnavailable(PersistenceError):
    """The publish target is unreachable; the whole batch is retried later, uncounted."""


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

            ours_first: dict[int, int] = {}
            for row in claimed:
                ours_first.setdefault(row.conversation_id, row.id)
            # Locked rows are still visible: an older pending row we did not get means
            # another relay holds it, so this conversation waits.
            heads = await conn.execute(
                sa.select(outbox.c.conversation_id, sa.func.min(outbox.c.id))
                .where(
                    outbox.c.parked_at.is_(None),
                    outbox.c.conversation_id.in_(list(ours_first)),
                )
                .group_by(outbox.c.conversation_id)
            )
            oldest = {conversation: first for conversation, first in heads}
            blocked = {
                conv for conv, first in ours_first.items() if oldest.get(conv, first) < first
            }

            published: list[int] = []
            failures: list[tuple[Any, str]] = []
            deferred = 0
            for row in claimed:
                if row.conversation_id in blocked:
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

"""The outbox backlog as an operator sees it: always current, whatever the relay is doing.

The relay's own ``parley_relay_outbox_pending`` is set only when it idles, so it
freezes during an outage or a backlog, exactly when it matters. This monitor is a
separate task reading the outbox every ``BACKLOG_INTERVAL`` seconds: how many rows
wait, how old the oldest one is, how many are parked. When PostgreSQL does not
answer, the figures stay as they were and ``…checked_timestamp_seconds`` stops
moving, which the alert rules watch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import sqlalchemy as sa
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.backoff import Backoff
from persistence.errors import wrap_errors
from persistence.models import outbox

logger = logging.getLogger("parley.backlog")

BACKLOG_INTERVAL = 5.0  # seconds between two readings

BACKLOG = Gauge("parley_relay_outbox_backlog", "Unpublished, unparked outbox rows (always current)")
OLDEST_AGE = Gauge(
    "parley_relay_outbox_oldest_age_seconds",
    "Age of the oldest unpublished, unparked outbox row (0 when there is none)",
)
PARKED_ROWS = Gauge(
    "parley_relay_outbox_parked", "Parked outbox rows waiting for `parley outbox retry`"
)
CHECKED = Gauge(
    "parley_relay_backlog_checked_timestamp_seconds",
    "When the backlog was last read (Unix time); stops moving while PostgreSQL is away",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Backlog:
    pending: int
    oldest_age: float  # seconds
    parked: int


async def read_backlog(engine: AsyncEngine) -> Backlog:
    pending = outbox.c.parked_at.is_(None)
    query = sa.select(
        sa.func.count().filter(pending),
        sa.func.coalesce(
            sa.func.extract(
                "epoch", sa.func.now() - sa.func.min(outbox.c.created_at).filter(pending)
            ),
            0,
        ),
        sa.func.count().filter(outbox.c.parked_at.is_not(None)),
    ).select_from(outbox)
    async with wrap_errors(), engine.connect() as conn:
        count, age, parked = (await conn.execute(query)).one()
    return Backlog(pending=int(count), oldest_age=max(float(age), 0.0), parked=int(parked))


class BacklogMonitor:
    """A task that keeps the backlog gauges current; only cancellation ends it."""

    def __init__(self, *, engine: AsyncEngine, interval: float = BACKLOG_INTERVAL) -> None:
        self._engine = engine
        self._interval = interval

    async def measure(self) -> Backlog:
        backlog = await read_backlog(self._engine)
        BACKLOG.set(backlog.pending)
        OLDEST_AGE.set(backlog.oldest_age)
        PARKED_ROWS.set(backlog.parked)
        CHECKED.set_to_current_time()
        return backlog

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                await self.measure()
            except Exception as exc:  # any error: keep measuring, with backoff
                delay = backoff.next()
                logger.warning(
                    "reading the outbox backlog failed (%s); retrying in %.1fs",
                    type(exc).__name__,
                    delay,
                    extra={"action": "relay.backlog_retry"},
                )
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            await asyncio.sleep(self._interval)

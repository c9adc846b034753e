"""The outbox relay process: LISTEN wakes it, a poll backs it up, Redis receives.

The loop relays until the outbox is empty, then waits for whichever comes first:
a NOTIFY, the poll interval, or the stop signal. It survives PostgreSQL and
Redis restarts by backing off and trying again; nothing is deleted from the
outbox before it was published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from prometheus_client import Counter, Gauge, start_http_server

from parley.settings import Settings
from persistence.backlog import BacklogMonitor
from persistence.backoff import Backoff
from persistence.database import create_engine
from persistence.errors import DatabaseUnavailable
from persistence.listener import NotifyListener
from persistence.outbox import OUTBOX_CHANNEL, BatchReport, Outbox, PublishUnavailable

logger = logging.getLogger("parley.relay")

RELAYED = Counter("parley_relay_published_total", "Outbox events published to Redis")
FAILED = Counter("parley_relay_publish_failures_total", "Outbox rows whose publish failed")
PARKED = Counter("parley_relay_parked_total", "Outbox rows parked after repeated failures")
PENDING = Gauge("parley_relay_outbox_pending", "Unpublished, unparked outbox rows")
OUTAGES = Counter(
    "parley_relay_outage_rounds_total",
    "Relay rounds abandoned because PostgreSQL or Redis was unavailable (retried, uncounted)",
    ["service"],
)
PUBLISH_OUTAGES = Counter(
    "parley_relay_publish_outages_total", "Times publishing became impossible (Redis unreachable)"
)
PUBLISH_DOWN = Gauge("parley_relay_publish_unavailable", "1 while the relay cannot publish")
REDIS_TIMEOUT = 2.0  # seconds for a Redis command to answer
PENDING_INTERVAL = 5.0  # seconds between counts of pending rows while the relay keeps up


class RedisPublisher:
    """Publishes to one Redis channel; any Redis error becomes PublishUnavailable.

    A PUBLISH fails for reasons of Redis, never of the row: a dropped connection,
    but also a refusal that holds for every row alike (``NOPERM`` from an ACL,
    ``READONLY`` from a replica, ``OOM``, ``LOADING``). Counting those against
    each row would park a whole healthy backlog, so the relay treats every one
    of them as an outage: it backs off and retries the batch, uncounted.
    """

    def __init__(self, *, client: aioredis.Redis, channel: str) -> None:
        self._client = client
        self._channel = channel

    async def publish(self, message: str) -> None:
        try:
            await self._client.publish(self._channel, message)
        except (redis.exceptions.RedisError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"[:200]
            raise PublishUnavailable(f"redis unavailable: {reason}") from exc

    async def publish_many(self, messages: Sequence[str]) -> None:
        """One round trip for the whole round: a pipeline, in order, without MULTI."""
        if not messages:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for message in messages:
                    pipe.publish(self._channel, message)
                await pipe.execute()
        except (redis.exceptions.RedisError, OSError) as exc:
            reason = f"{type(exc).__name__}: {exc}"[:200]
            raise PublishUnavailable(f"redis unavailable: {reason}") from exc


class OutboxRelay:
    """Moves outbox rows to the publisher, in order, at least once."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        publisher: RedisPublisher | Any,
        database_url: str,
        poll_interval: float,
        batch_size: int,
        max_attempts: int,
        backlog: BacklogMonitor | None = None,
    ) -> None:
        self._backlog = backlog
        self.publish_down = False
        self._outbox = outbox
        self._publisher = publisher
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._counted_at = 0.0  # monotonic time of the last COUNT of pending rows
        self._listener = NotifyListener(
            database_url=database_url, channel=OUTBOX_CHANNEL, wake=self._wake
        )

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        listener = asyncio.create_task(self._listener.run(), name="outbox-listener")
        backlog = (
            asyncio.create_task(self._backlog.run(), name="outbox-backlog")
            if self._backlog is not None
            else None
        )
        try:
            await self._loop(listener)
        finally:
            for task in (listener, backlog):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _loop(self, listener: asyncio.Task[None]) -> None:
        backoff = Backoff()
        while not self._stop.is_set():
            if listener.done():
                # The listener never returns on its own; if it died, fail loudly.
                listener.result()
                raise RuntimeError("outbox listener stopped")
            self._wake.clear()
            try:
                report = await self._outbox.relay_batch(
                    self._publisher, batch_size=self._batch_size, max_attempts=self._max_attempts
                )
            except (DatabaseUnavailable, PublishUnavailable) as exc:
                OUTAGES.labels(
                    service="redis" if isinstance(exc, PublishUnavailable) else "postgres"
                ).inc()
                if isinstance(exc, PublishUnavailable) and not self.publish_down:
                    self.publish_down = True  # one outage, however many rounds it lasts
                    PUBLISH_OUTAGES.inc()
                    PUBLISH_DOWN.set(1)
                delay = backoff.next()
                logger.warning(
                    "relay round failed (%s); retrying in %.1fs",
                    exc,
                    delay,
                    extra={"action": "relay.backoff"},
                )
                await self._sleep(delay)
                continue
            backoff.reset()
            self.publish_down = False
            PUBLISH_DOWN.set(0)
            RELAYED.inc(report.published)
            FAILED.inc(report.failed)
            PARKED.inc(report.parked)
            if report.parked:
                logger.error(
                    "parked %d outbox rows after %d attempts",
                    report.parked,
                    self._max_attempts,
                    extra={"action": "relay.parked"},
                )
            if report.published:
                logger.debug("relayed %d events", report.published, extra={"action": "relay.batch"})
            if report.claimed >= self._batch_size and report.published:
                continue  # more may be waiting: drain before sleeping
            if report.deferred and not report.published:
                # Another relay holds the head of these conversations; give it a moment.
                await self._sleep(min(self._poll_interval, 0.05))
                continue
            await self._count_pending(report)
            await self._sleep(self._poll_interval)

    async def _count_pending(self, report: BatchReport) -> None:
        """Keep the pending gauge without a COUNT on every NOTIFY at low load.

        A round that took less than a batch, deferred and failed nothing, left
        the outbox empty as far as this relay can tell: the gauge reads 0 then,
        and the table is counted at most every ``PENDING_INTERVAL``.
        """
        now = time.monotonic()
        if report.claimed == report.published and now - self._counted_at < PENDING_INTERVAL:
            PENDING.set(0)
            return
        self._counted_at = now
        with contextlib.suppress(DatabaseUnavailable):
            PENDING.set(await self._outbox.pending())

    async def _sleep(self, seconds: float) -> None:
        """Wait for a wake-up (NOTIFY, stop) or the timeout, whichever is first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()


async def run_relay(settings: Settings) -> None:
    """The ``parley relay`` process: runs until SIGTERM or SIGINT, then stops cleanly."""
    settings.require("database_url", "redis_url")
    assert settings.database_url is not None and settings.redis_url is not None
    if settings.relay_metrics_port:
        start_http_server(settings.relay_metrics_port, addr=settings.host)
    # No pre-ping: a round that meets a dead connection is retried anyway.
    engine = create_engine(settings.database_url, pool_size=2, pre_ping=False)
    client = aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )
    relay = OutboxRelay(
        outbox=Outbox(engine=engine),
        publisher=RedisPublisher(client=client, channel=settings.events_channel),
        database_url=settings.database_url,
        poll_interval=settings.relay_poll_interval,
        batch_size=settings.relay_batch_size,
        max_attempts=settings.relay_max_attempts,
        backlog=BacklogMonitor(engine=engine),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, relay.stop)
    logger.info("relay started", extra={"action": "relay.start"})
    try:
        await relay.run()
    finally:
        await client.aclose()
        await engine.dispose()
        logger.info("relay stopped", extra={"action": "relay.stop"})

"""The Faust app; run it with ``faust -A streams.app worker -l info``.

The module-level ``app`` carries no configuration until Faust finalizes it:
then :func:`configure` reads :class:`~parley.settings.Settings` from the
environment, and :func:`wire` declares the topics and the persistence agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
from typing import Any

import faust
from prometheus_client import start_http_server

from parley import loops
from parley.settings import Settings
from persistence.database import create_engine
from persistence.schema import require_schema
from streams.agent import install_persistence_agent
from streams.commands import install_commands
from streams.lag import LagMonitor
from streams.monitor import LeanMonitor
from streams.security import KafkaSecurity
from streams.transport import TunedTransport

COMMIT_INTERVAL = 0.5  # seconds between offset commits
HEARTBEAT_INTERVAL = 1.0  # seconds
# Kubernetes kills a pod 30 s after SIGTERM; the worker ends itself before that.
STOP_TIMEOUT = 20.0  # seconds from the start of a stop to a forced exit
STOP_TIMEOUT_EXIT_CODE = 70
# Container allocations between two young-generation collections (Python's default: 700).
GC_YOUNG_THRESHOLD = 50_000

logger = logging.getLogger("parley.worker")


class ParleyApp(faust.App):  # type: ignore[misc]
    """A Faust app whose settings come from :class:`Settings`."""

    settings: Settings | None = None
    fetch_wait_ms: int | None = None
    lag_task: asyncio.Task[None] | None = None
    fetch_idle_wait_ms: int | None = None
    event_type: Any = None

    def _new_transport(self) -> Any:
        return TunedTransport(self.conf.broker_consumer, self)

    def create_event(self, key: Any, value: Any, headers: Any, message: Any) -> Any:
        # Faust reads ``conf.Event`` through its settings registry for each message.
        if self.event_type is None:
            self.event_type = self.conf.Event
        return self.event_type(self, key, value, headers, message)

    async def on_start(self) -> None:
        # Only a worker starts the app (operator commands run beside it), so
        # this gates the worker alone: no consuming on an unmigrated database.
        assert self.settings is not None
        await check_schema(self.settings)
        await super().on_start()
        tune_collector()
        if self.settings.worker_metrics_port:
            self.lag_task = asyncio.create_task(
                LagMonitor(settings=self.settings).run(), name="worker-consumer-lag"
            )

    async def on_stop(self) -> None:
        """Stop without waiting for the batch in hand, and within ``STOP_TIMEOUT``.

        By default Faust waits, before it stops the consumer, until every message
        being processed is acked; a batch retrying through a PostgreSQL outage
        would hold the stop until PostgreSQL is back. The agents ack only what
        they stored (see :mod:`streams.agent`), so the consumer's last commit
        covers stored messages only, and the abandoned batch is redelivered. The
        watchdog bounds whatever else could hang (a broker that does not answer):
        a forced exit loses nothing, since nothing unstored was acked.
        """
        self.conf.stream_wait_empty = False
        start_stop_watchdog(STOP_TIMEOUT)
        if self.lag_task is not None:
            self.lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.lag_task
        await super().on_stop()


async def check_schema(settings: Settings) -> None:
    """Raise SchemaOutdated (the worker exits) unless the database is migrated."""
    engine = create_engine(settings.sqlalchemy_url, pool_size=1)
    try:
        await require_schema(engine)
    except Exception as exc:
        logger.critical("%s", exc, extra={"action": "worker.schema"})
        raise
    finally:
        await engine.dispose()


def tune_collector() -> None:
    """Spare the worker's hot path the cyclic garbage collector's sweeps.

    A backlog keeps tens of thousands of records, events and messages alive, and
    each of them is a container the collector walks: with Python's defaults the
    agent stage spent about 15 % of the worker's CPU collecting (0.97 s of 6.3 s
    for 20,000 messages, four full collections of 150 ms each) and freed a few
    hundred objects. The per-message objects form no cycles; reference counting
    frees them. So the objects alive once the worker has started (modules,
    services, compiled statements) are frozen out of every collection, and young
    collections run every ``GC_YOUNG_THRESHOLD`` allocations instead of 700.
    Cycles are still collected, later.
    """
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


def start_stop_watchdog(timeout: float) -> None:
    def expire() -> None:
        logger.error(
            "the worker did not stop within %.0fs; exiting",
            timeout,
            extra={"action": "worker.stop_timeout"},
        )
        logging.shutdown()
        os._exit(STOP_TIMEOUT_EXIT_CODE)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.name = "parley-stop-watchdog"
    timer.start()


app = ParleyApp("parley", autodiscover=False)
install_commands(app)


@app.on_configured.connect  # type: ignore[untyped-decorator,arg-type]
def configure(sender: ParleyApp, conf: Any, **_: Any) -> None:
    settings = Settings.from_env()
    settings.require("kafka_bootstrap_servers", "database_url")
    # Configured before the worker builds its loops (its own and the consumer thread's).
    loops.use_uvloop()
    sender.settings = settings
    sender.fetch_wait_ms = settings.fetch_wait_ms
    sender.fetch_idle_wait_ms = settings.fetch_idle_wait_ms or None
    conf.id = settings.worker_id
    conf.broker = f"kafka://{settings.kafka_bootstrap_servers}"
    conf.broker_credentials = KafkaSecurity.from_settings(settings).faust_credentials()
    conf.store = "memory://"
    conf.topic_partitions = settings.topic_partitions
    conf.topic_replication_factor = settings.topic_replication
    conf.consumer_auto_offset_reset = "earliest"
    conf.producer_acks = -1
    conf.broker_commit_interval = COMMIT_INTERVAL
    conf.broker_session_timeout = settings.session_timeout
    conf.broker_heartbeat_interval = HEARTBEAT_INTERVAL
    # Faust's web server would need a port per worker; Parley's health lives in the gateway.
    conf.web_enabled = False
    # Without the web views, Faust's per-event statistics have no reader.
    conf.Monitor = LeanMonitor
    # Faust's repaired Cython fast paths (off by default since faust 0.14): the
    # stream takes an event already in its buffer without awaiting the channel.
    conf.cython_optimizations = True
    conf.datadir = str(settings.data_dir / "worker")
    if settings.worker_metrics_port:
        # Faust's own web server is off; the agent's counters are served here.
        start_http_server(settings.worker_metrics_port, addr=settings.host)


@app.on_after_configured.connect  # type: ignore[untyped-decorator,arg-type]
def wire(sender: ParleyApp, **_: Any) -> None:
    assert sender.settings is not None
    install_persistence_agent(sender, sender.settings)

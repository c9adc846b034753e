"""The Faust app; run it with ``faust -A streams.app worker -l info``.

The module-level ``app`` carries no configuration until Faust finalizes it:
then :func:`configure` reads :class:`~parley.settings.Settings` from the
environment, and :func:`wire` declares the topics and the persistence agent.
"""

from __future__ import annotations

from typing import Any

import faust
from prometheus_client import start_http_server

from parley.settings import Settings
from streams.agent import install_persistence_agent
from streams.transport import TunedTransport

COMMIT_INTERVAL = 0.5  # seconds between offset commits
SESSION_TIMEOUT = 10.0  # seconds before the group evicts a silent worker
HEARTBEAT_INTERVAL = 1.0  # seconds


class ParleyApp(faust.App):  # type: ignore[misc]
    """A Faust app whose settings come from :class:`Settings`."""

    settings: Settings | None = None
    fetch_wait_ms: int | None = None
    fetch_idle_wait_ms: int | None = None

    def _new_transport(self) -> Any:
        return TunedTransport(self.conf.broker_consumer, self)


app = ParleyApp("parley", autodiscover=False)


@app.on_configured.connect  # type: ignore[untyped-decorator,arg-type]
def configure(sender: ParleyApp, conf: Any, **_: Any) -> None:
    settings = Settings.from_env()
    settings.require("kafka_bootstrap_servers", "database_url")
    sender.settings = settings
    sender.fetch_wait_ms = settings.fetch_wait_ms
    sender.fetch_idle_wait_ms = settings.fetch_idle_wait_ms or None
    conf.id = settings.worker_id
    conf.broker = f"kafka://{settings.kafka_bootstrap_servers}"
    conf.store = "memory://"
    conf.topic_partitions = settings.topic_partitions
    conf.topic_replication_factor = settings.topic_replication
    conf.consumer_auto_offset_reset = "earliest"
    conf.producer_acks = -1
    conf.broker_commit_interval = COMMIT_INTERVAL
    conf.broker_session_timeout = SESSION_TIMEOUT
    conf.broker_heartbeat_interval = HEARTBEAT_INTERVAL
    # Faust's web server would need a port per worker; Parley's health lives in the gateway.
    conf.web_enabled = False
    conf.datadir = str(settings.data_dir / "worker")
    if settings.worker_metrics_port:
        # Faust's own web server is off; the agent's counters are served here.
        start_http_server(settings.worker_metrics_port, addr=settings.host)


@app.on_after_configured.connect  # type: ignore[untyped-decorator,arg-type]
def wire(sender: ParleyApp, **_: Any) -> None:
    assert sender.settings is not None
    install_persistence_agent(sender, sender.settings)

"""The system under fault: Parley's processes on the shared services, each one killable.

One :class:`Stack` per scenario: its own database (cloned from the migrated
template), topics, Redis channel and consumer group, two gateways on fixed ports
(so a killed gateway comes back where its clients look for it), one Faust worker
and one relay. The services (PostgreSQL, Redis, the broker) are shared by the
scenarios and restarted in place when they are embedded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from pathlib import Path

from parley.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedService,
    free_port,
)
from parley.settings import Secret, Settings
from tests.servers import Child, Cluster, create_topics, wait_ready
from tests.services import ServiceSet

WORKER_READY = "[^Worker]: Ready"
RELAY_READY = "listener.connected"
GATEWAYS = 2
RATE_LIMIT = 1_000_000  # messages per visitor per window: the load is not an abuser
# Every client of the suite comes from loopback: lift the per-address and per-socket
# limits where this version of the settings has them (branch `abuse`).
LIFTED_LIMITS: dict[str, float] = {
    "connect_burst": 1_000_000,
    "max_sockets_per_address": 1_000_000,
    "new_visitor_limit": 1_000_000,
    "socket_event_burst": 1_000_000.0,
}
START_TIMEOUT = 90.0  # seconds for a (re)started process to be ready on a busy machine


def scenario_settings(services: ServiceSet, database: str, workdir: Path) -> Settings:
    tag = uuid.uuid4().hex[:8]
    known = {field.name for field in dataclasses.fields(Settings)}
    lifted = {name: value for name, value in LIFTED_LIMITS.items() if name in known}
    return Settings(
        database_url=services.database_url(database),
        redis_url=services.redis_url,
        kafka_bootstrap_servers=services.bootstrap_servers,
        secret=Secret(secrets.token_urlsafe(48)),
        data_dir=workdir,
        topic_prefix=f"faults{tag}.",
        events_channel=f"parley:faults:{tag}",
        worker_id=f"faults-{tag}",
        topic_partitions=8,
        fetch_wait_ms=services.fetch_wait_ms,
        rate_limit_count=RATE_LIMIT,
        relay_poll_interval=0.5,
        **lifted,  # type: ignore[arg-type]
    )


class Stack:
    """Two gateways, a worker and a relay as separate processes."""

    def __init__(self, *, services: ServiceSet, settings: Settings, logs: Path) -> None:
        self.services = services
        self.settings = settings
        logs.mkdir(parents=True, exist_ok=True)
        self._cluster = Cluster(settings, logs)
        self.ports = [free_port() for _ in range(GATEWAYS)]
        self.urls = [f"http://127.0.0.1:{port}" for port in self.ports]
        self.gateways: list[Child] = []
        self.worker: Child | None = None
        self.relay: Child | None = None

    async def start(self) -> None:
        await create_topics(self.settings)
        self.worker, self.relay, *_ = await asyncio.gather(
            self._cluster.worker(),
            self._cluster.relay(),
            *(
                self._cluster.gateway(f"gateway-{i}", port=port)
                for i, port in enumerate(self.ports)
            ),
        )
        self.gateways = [c for c in self._cluster.children if c.name.startswith("gateway-")]
        self.gateways.sort(key=lambda c: c.name)

    def stop(self) -> None:
        self._cluster.stop()

    async def kill(self, child: Child) -> None:
        await asyncio.to_thread(child.kill)

    async def restart(self, child: Child) -> None:
        """Start a killed process again, the same way, and wait until it is ready."""
        since = len(child.output())
        child.start()
        if child is self.worker:
            await child.wait_for_output(WORKER_READY, START_TIMEOUT, since=since)
        elif child is self.relay:
            await child.wait_for_output(RELAY_READY, START_TIMEOUT, since=since)
        else:
            await wait_ready(child, self.urls[self.gateways.index(child)], START_TIMEOUT)

    def logs(self) -> dict[str, str]:
        return {child.name: str(child.log_path) for child in self._cluster.children}


def embedded(services: ServiceSet, kind: type[EmbeddedService]) -> EmbeddedService | None:
    """The embedded service of this kind, or None when a URL named an external one."""
    return next((s for s in services.embedded if isinstance(s, kind)), None)


SERVICE_KINDS: dict[str, type[EmbeddedService]] = {
    "postgres": EmbeddedPostgres,
    "redis": EmbeddedRedis,
    "broker": EmbeddedBroker,
}


async def restart_service(service: EmbeddedService, *, down_for: float) -> None:
    """Stop an embedded service, keep it down, start it again on the same port."""
    await asyncio.to_thread(service.stop)
    await asyncio.sleep(down_for)
    await asyncio.to_thread(service.start)

"""What every benchmark runs on: the embedded services, a fresh database, one project.

The services are those of the tests (:mod:`tests.services`): PostgreSQL, Redis and
Tansu started from their wheels unless ``DATABASE_URL``, ``REDIS_URL`` or
``KAFKA_BOOTSTRAP_SERVERS`` name one. Parley's processes are real child processes
(:class:`tests.servers.Cluster`), started by each benchmark as it needs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.tokens import TokenSigner
from parley.settings import Settings
from persistence.database import create_engine
from persistence.directory import Directory
from tests.bench.procs import ProcessWatch, Watched
from tests.servers import Cluster, create_topics
from tests.services import ServiceSet

# Every bench client comes from loopback, and a few visitors send a lot: lift the
# per-address, per-socket and per-visitor limits (names a gateway may not know are ignored).
LIFTED_LIMITS = {
    "PARLEY_RATE_LIMIT_COUNT": "100000000",
    "PARLEY_CONNECT_BURST": "1000000",
    "PARLEY_CONNECT_RATE": "1000000",
    "PARLEY_MAX_SOCKETS_PER_ADDRESS": "1000000",
    "PARLEY_NEW_VISITOR_LIMIT": "1000000",
    "PARLEY_SOCKET_EVENT_BURST": "1000000",
    "PARLEY_SOCKET_EVENT_RATE": "1000000",
}


class BenchStack:
    """Services, settings, a project with an agent, and the cluster of Parley processes."""

    def __init__(
        self, *, services: ServiceSet, settings: Settings, workdir: Path, database: str
    ) -> None:
        self.services = services
        self.settings = settings
        self.workdir = workdir
        self.database = database
        self.cluster = Cluster(settings, workdir)
        self.cluster.env.update(LIFTED_LIMITS)
        self.project_id = 0
        self.token = ""

    @property
    def database_url(self) -> str:
        assert self.settings.database_url is not None
        return self.settings.database_url

    async def create_project(self) -> None:
        engine = create_engine(self.database_url, pool_size=1)
        try:
            directory = Directory(engine=engine)
            project = await directory.create_project(name="bench")
            agent = await directory.add_agent(project_id=project.id, email="bench@parley.test")
        finally:
            await engine.dispose()
        self.project_id = project.id
        self.token = TokenSigner(secret=self.settings.secret, ttl=3600).issue(agent.id)

    def watch(self, *, client: bool = True) -> ProcessWatch:
        """The running Parley processes, the embedded services and (optionally) this one."""
        watched = [
            Watched(name=child.name, pid=child.process.pid)
            for child in self.cluster.children
            if child.process is not None and child.process.poll() is None
        ]
        for service in self.services.embedded:
            pid = service_pid(service)
            if pid is not None:
                watched.append(
                    Watched(name=_service_name(service), pid=pid, tree=service.name == "postgres")
                )
        if client:
            watched.append(Watched(name="client", pid=os.getpid()))
        return ProcessWatch(watched)


def service_pid(service: object) -> int | None:
    pid = getattr(service, "pid", None)
    if isinstance(pid, int):
        return pid
    process = getattr(service, "_process", None)
    return process.pid if process is not None else None


def _service_name(service: object) -> str:
    name = str(getattr(service, "name", "service"))
    return {"postgres": "postgresql"}.get(name, name)


@contextlib.asynccontextmanager
async def bench_stack(
    workdir: Path, *, durable: bool = False, **overrides: str
) -> AsyncIterator[BenchStack]:
    """Start the services and a project; stop every process on the way out.

    ``durable`` runs the embedded PostgreSQL with fsync on, as ``parley run`` does.

    ``overrides`` are Parley environment variables (``PARLEY_RELAY_BATCH_SIZE``...).
    """
    base = {**os.environ, "PARLEY_SECRET": uuid.uuid4().hex + uuid.uuid4().hex}
    services = ServiceSet.start(Settings.from_env(base), workdir, durable=durable)
    stack: BenchStack | None = None
    try:
        await asyncio.to_thread(services.create_template)
        database = await services.clone_template()
        tag = uuid.uuid4().hex[:6]
        env = {
            **base,
            **LIFTED_LIMITS,
            "DATABASE_URL": services.database_url(database),
            "REDIS_URL": services.redis_url,
            "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
            "PARLEY_DATA_DIR": str(workdir),
            "PARLEY_TOPIC_PREFIX": f"bench{tag}.",
            "PARLEY_EVENTS_CHANNEL": f"parley:bench:{tag}",
            "PARLEY_WORKER_ID": f"bench-{tag}",
            "PARLEY_TOPIC_PARTITIONS": "8",
            "PARLEY_KAFKA_FETCH_WAIT_MS": str(services.fetch_wait_ms),
            **overrides,
        }
        settings = Settings.from_env(env)
        await create_topics(settings)
        stack = BenchStack(services=services, settings=settings, workdir=workdir, database=database)
        stack.cluster.env.update(overrides)
        await stack.create_project()
        yield stack
    finally:
        if stack is not None:
            stack.cluster.stop()
        await asyncio.to_thread(services.stop)

"""The real services the tests run against: embedded unless a URL names one."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

import asyncpg

from parley.embedded import EmbeddedBroker, EmbeddedPostgres, EmbeddedRedis, EmbeddedService
from parley.settings import Secret, Settings, to_plain_url
from persistence.schema import ensure_database, upgrade

EMBEDDED_FETCH_WAIT = 5  # milliseconds


@dataclasses.dataclass
class ServiceSet:
    server_url: str  # a PostgreSQL URL whose database part is replaced per test
    redis_url: str
    bootstrap_servers: str
    fetch_wait_ms: int
    embedded: list[EmbeddedService]
    template: str = ""

    @classmethod
    def start(cls, settings: Settings, root: Path, *, durable: bool = False) -> ServiceSet:
        """``durable`` keeps PostgreSQL's fsync, as ``parley run`` does; tests do without."""
        embedded: list[EmbeddedService] = []
        try:
            if settings.database_url:
                server_url = to_plain_url(settings.database_url)
            else:
                pg = EmbeddedPostgres(workdir=root / "postgres", durable=durable)
                pg.start()
                embedded.append(pg)
                server_url = pg.url
            if settings.redis_url:
                redis_url = settings.redis_url
            else:
                redis = EmbeddedRedis(workdir=root / "redis")
                redis.start()
                embedded.append(redis)
                redis_url = redis.url
            fetch_wait = settings.fetch_wait_ms
            if settings.kafka_bootstrap_servers:
                bootstrap = settings.kafka_bootstrap_servers
            else:
                broker = EmbeddedBroker(workdir=root / "broker")
                broker.start()
                embedded.append(broker)
                bootstrap = broker.url
                fetch_wait = EMBEDDED_FETCH_WAIT
        except BaseException:
            for service in embedded:
                service.stop()
            raise
        return cls(
            server_url=server_url,
            redis_url=redis_url,
            bootstrap_servers=bootstrap,
            fetch_wait_ms=fetch_wait,
            embedded=embedded,
        )

    def database_url(self, name: str) -> str:
        return f"{self.server_url.rsplit('/', 1)[0]}/{name}"

    def create_template(self) -> None:
        self.template = f"parley_template_{uuid.uuid4().hex[:10]}"
        url = self.database_url(self.template)
        asyncio.run(ensure_database(url))
        upgrade(url)

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.database_url("postgres"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def clone_template(self) -> str:
        name = f"parley_test_{uuid.uuid4().hex[:12]}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return name

    async def drop_database(self, name: str) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.template:
            asyncio.run(self.drop_database(self.template))
        for service in reversed(self.embedded):
            service.stop()


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process read back these settings."""
    assert settings.database_url and settings.redis_url and settings.kafka_bootstrap_servers
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "PARLEY_SECRET": settings.secret.reveal(),
        "PARLEY_DATA_DIR": str(settings.data_dir),
        "PARLEY_HOST": settings.host,
        "PARLEY_PORT": str(settings.port),
        "PARLEY_TOPIC_PREFIX": settings.topic_prefix,
        "PARLEY_EVENTS_CHANNEL": settings.events_channel,
        "PARLEY_WORKER_ID": settings.worker_id,
        "PARLEY_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "PARLEY_KAFKA_FETCH_WAIT_MS": str(settings.fetch_wait_ms),
        "PARLEY_RATE_LIMIT_COUNT": str(settings.rate_limit_count),
        "PARLEY_RATE_LIMIT_WINDOW": str(settings.rate_limit_window),
        "PARLEY_RELAY_POLL_INTERVAL": str(settings.relay_poll_interval),
        "PARLEY_RELAY_BATCH_SIZE": str(settings.relay_batch_size),
        "PARLEY_AGENT_STORERS": str(settings.agent_storers),
        "PARLEY_PRESENCE_TTL": str(settings.presence_ttl),
        "PARLEY_TYPING_TIMEOUT": str(settings.typing_timeout),
        "PARLEY_SOCKET_TRANSPORTS": ",".join(settings.socket_transports),
        "PARLEY_LOG_LEVEL": settings.log_level,
        "PARLEY_CONNECT_BURST": str(settings.connect_burst),
        "PARLEY_CONNECT_RATE": str(settings.connect_rate),
        "PARLEY_MAX_SOCKETS_PER_ADDRESS": str(settings.max_sockets_per_address),
        "PARLEY_NEW_VISITOR_LIMIT": str(settings.new_visitor_limit),
        "PARLEY_NEW_VISITOR_WINDOW": str(settings.new_visitor_window),
        "PARLEY_SOCKET_EVENT_BURST": str(settings.socket_event_burst),
        "PARLEY_SOCKET_EVENT_RATE": str(settings.socket_event_rate),
        "PARLEY_CONTEXT_UPDATES_PER_MINUTE": str(settings.context_updates_per_minute),
        "PARLEY_AGENT_RECHECK_INTERVAL": str(settings.agent_recheck_interval),
    }


def isolated_settings(services: ServiceSet, database_url: str, data_dir: Path) -> Settings:
    """Settings of their own: this database, and their own topics, channel and group."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        database_url=database_url,
        redis_url=services.redis_url,
        kafka_bootstrap_servers=services.bootstrap_servers,
        secret=Secret(f"test-secret-{uuid.uuid4().hex}"),
        data_dir=data_dir,
        topic_prefix=f"t{tag}.",
        events_channel=f"parley:events:{tag}",
        worker_id=f"parley-worker-{tag}",
        topic_partitions=4,
        fetch_wait_ms=services.fetch_wait_ms,
        relay_poll_interval=0.5,
        # Every test client comes from 127.0.0.1: the per-address limits are lifted
        # here and set low in the tests that exercise them.
        connect_burst=10_000,
        max_sockets_per_address=10_000,
        new_visitor_limit=10_000,
    )

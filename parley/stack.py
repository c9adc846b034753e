"""The services Parley needs, embedded where no URL names them.

``parley run`` and the tests use this: each of PostgreSQL, Redis and the broker
is taken from its URL when one is set (and checked, with one sentence naming it
when it cannot be reached), or started from its wheel under the data folder.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import redis.asyncio as aioredis
import redis.exceptions

from parley.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedService,
)
from parley.settings import DEFAULT_SESSION_TIMEOUT, Settings
from persistence.errors import DatabaseUnavailable
from persistence.schema import ensure_database, upgrade
from streams.errors import BrokerUnavailable
from streams.security import KafkaSecurity
from streams.topics import ensure_topics, parley_topics

logger = logging.getLogger("parley.stack")

# Tansu answers a fetch only when the wait is over, so the wait is the worker's
# latency; it also bounds how long Tansu may list a partition's batches for a fetch,
# and 5 ms is too short for that once a few thousand batches pile up on a busy machine.
EMBEDDED_FETCH_WAIT = 20  # milliseconds
# The wait once nothing flows: the first message after a quiet spell waits this
# long at most, and an idle worker fetches 4 times a second instead of 200.
EMBEDDED_FETCH_IDLE_WAIT = 250  # milliseconds
# Tansu holds a new member's JoinGroup for about half the session timeout, and the
# worker rejoins after every broker recycle: 4 s keeps that hold near 2 s while a
# heartbeat a second still leaves room for a busy event loop.
EMBEDDED_SESSION_TIMEOUT = 4.0  # seconds
DEFAULT_DATABASE = "parley"


class ServiceUnreachable(Exception):
    """A configured service does not answer; the message names it."""


class LocalStack:
    """Starts what is missing, checks what is configured, and stops what it started."""

    def __init__(self, *, settings: Settings, root: Path | None = None) -> None:
        self._settings = settings
        self._root = root or settings.data_dir
        self.postgres: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self.broker: EmbeddedBroker | None = None

    @property
    def embedded(self) -> list[EmbeddedService]:
        return [s for s in (self.postgres, self.redis, self.broker) if s is not None]

    def start(self) -> Settings:
        """Return the settings with every URL filled in and every service reachable."""
        settings = self._settings
        changes: dict[str, object] = {}
        try:
            if settings.database_url is None:
                # The user's conversations live here: keep PostgreSQL's fsync defaults.
                self.postgres = EmbeddedPostgres(workdir=self._root / "postgres", durable=True)
                self.postgres.start()
                base = self.postgres.url.rsplit("/", 1)[0]
                changes["database_url"] = f"{base}/{DEFAULT_DATABASE}"
            if settings.redis_url is None:
                self.redis = EmbeddedRedis(workdir=self._root / "redis")
                self.redis.start()
                changes["redis_url"] = self.redis.url
            if settings.kafka_bootstrap_servers is None:
                self.broker = EmbeddedBroker(workdir=self._root / "broker")
                self.broker.start()
                changes["kafka_bootstrap_servers"] = self.broker.url
                changes["fetch_wait_ms"] = EMBEDDED_FETCH_WAIT
                if settings.session_timeout == DEFAULT_SESSION_TIMEOUT:
                    changes["session_timeout"] = EMBEDDED_SESSION_TIMEOUT
                changes["fetch_idle_wait_ms"] = (
                    settings.fetch_idle_wait_ms or EMBEDDED_FETCH_IDLE_WAIT
                )
            resolved = settings.replace(**changes)
            asyncio.run(check_services(resolved))
        except BaseException:
            self.stop()
            raise
        return resolved

    def stop(self) -> None:
        for service in reversed(self.embedded):
            service.stop()


async def check_services(settings: Settings) -> None:
    """Create the database and topics if missing; one sentence per unreachable service."""
    assert settings.database_url and settings.redis_url and settings.kafka_bootstrap_servers
    try:
        await ensure_database(settings.database_url)
    except DatabaseUnavailable as exc:
        raise ServiceUnreachable(str(exc)) from None
    client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=3)
    try:
        await client.ping()
    except (redis.exceptions.RedisError, OSError):
        raise ServiceUnreachable(
            f"Redis at {redacted(settings.redis_url)} cannot be reached"
        ) from None
    finally:
        await client.aclose()
    try:
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            parley_topics(settings),
            replication=settings.topic_replication,
            security=KafkaSecurity.from_settings(settings),
        )
    except BrokerUnavailable:
        raise ServiceUnreachable(
            f"the Kafka broker at {settings.kafka_bootstrap_servers} cannot be reached"
        ) from None


def migrate(settings: Settings) -> None:
    assert settings.database_url is not None
    upgrade(settings.database_url)


def redacted(url: str) -> str:
    """A URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}" if ":" in credentials else url
    return url

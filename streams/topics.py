"""Parley's topics, the one list: names, partitions and retention.

``parley topics create`` (the compose ``topics`` service, the Kubernetes init
containers), ``parley run`` and the tests all create topics from
:func:`parley_topics`; nothing relies on a broker's auto-creation, which
production brokers turn off and which would give ``parley.agent-messages`` the
broker's default partition count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from parley.settings import Settings
from streams.errors import BrokerUnavailable
from streams.security import KafkaSecurity

logger = logging.getLogger("parley.topics")

REQUEST_TIMEOUT = 10_000  # milliseconds
HOUR = 3_600_000  # milliseconds
DEAD_LETTER_PARTITIONS = 1  # a trickle, read by people; one partition keeps it in order


@dataclasses.dataclass(frozen=True, kw_only=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    role: str  # what it carries, for the operator listing

    @property
    def configs(self) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}


def parley_topics(settings: Settings) -> list[TopicSpec]:
    """Every topic Parley writes to."""
    retention = settings.topic_retention_hours * HOUR
    return [
        TopicSpec(
            name=settings.visitor_topic,
            partitions=settings.topic_partitions,
            retention_ms=retention,
            role="visitor messages, accepted by a gateway, stored by the worker",
        ),
        TopicSpec(
            name=settings.agent_topic,
            partitions=settings.topic_partitions,
            retention_ms=retention,
            role="agent replies, accepted by a gateway, stored by the worker",
        ),
        TopicSpec(
            name=settings.dead_letter_topic,
            partitions=DEAD_LETTER_PARTITIONS,
            retention_ms=settings.dead_letter_retention_hours * HOUR,
            role="events the worker could not store, with the reason in an `error` header",
        ),
    ]


@contextlib.asynccontextmanager
async def admin_client(
    bootstrap_servers: str, *, security: KafkaSecurity | None = None
) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client; BrokerUnavailable when the broker cannot be reached."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=REQUEST_TIMEOUT,
        client_id="parley-admin",
        **(security or KafkaSecurity()).aiokafka_kwargs(),
    )
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        await admin.close()
        raise BrokerUnavailable(f"broker at {bootstrap_servers} cannot be reached") from exc
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[TopicSpec],
    *,
    replication: int = 1,
    security: KafkaSecurity | None = None,
) -> list[str]:
    """Create the missing topics; return the names that were created.

    Existing topics are left as they are: a partition count is never changed
    here, because that would move keys between partitions (and so reorder them).
    """
    specs = {spec.name: spec for spec in topics}
    async with admin_client(bootstrap_servers, security=security) as admin:
        existing = set(await admin.list_topics())
        missing = [name for name in specs if name not in existing]
        if missing:
            new = [
                NewTopic(
                    name,
                    specs[name].partitions,
                    replication_factor=replication,
                    topic_configs=specs[name].configs,
                )
                for name in missing
            ]
            # Another process (a second pod's init container) may have created them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            logger.info("created topics %s", missing, extra={"action": "topics.create"})
        return missing


async def create_parley_topics(settings: Settings) -> list[str]:
    """``parley topics create``: Parley's topics with the configured replication."""
    settings.require("kafka_bootstrap_servers")
    assert settings.kafka_bootstrap_servers is not None
    return await ensure_topics(
        settings.kafka_bootstrap_servers,
        parley_topics(settings),
        replication=settings.topic_replication,
        security=KafkaSecurity.from_settings(settings),
    )

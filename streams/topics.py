"""Topic administration: Parley creates its own topics rather than rely on auto-creation."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from parley.settings import Settings
from streams.errors import BrokerUnavailable

logger = logging.getLogger("parley.topics")

REQUEST_TIMEOUT = 10_000  # milliseconds


def parley_topics(settings: Settings) -> dict[str, int]:
    """Every topic Parley writes to, with its partition count."""
    return {
        settings.visitor_topic: settings.topic_partitions,
        settings.agent_topic: settings.topic_partitions,
        settings.dead_letter_topic: 1,
    }


async def ensure_topics(
    bootstrap_servers: str, topics: Mapping[str, int], *, replication: int = 1
) -> list[str]:
    """Create the missing topics; return the names that were created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=REQUEST_TIMEOUT
    )
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        await admin.close()
        raise BrokerUnavailable(f"broker at {bootstrap_servers} cannot be reached") from exc
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if missing:
            new = [NewTopic(name, topics[name], replication_factor=replication) for name in missing]
            # Another process may have created them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            logger.info("created topics %s", missing, extra={"action": "topics.create"})
        return missing
    finally:
        await admin.close()

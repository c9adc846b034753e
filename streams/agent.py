"""The persistence agents: batches of visitor messages and agent replies into PostgreSQL.

Faust acks a ``take`` batch only when the loop asks for the next one, so offsets
move past a message only after the transaction that stored it committed. A
database outage stalls the agent (retrying with backoff) instead of skipping
messages; a value that is not a Parley event, or one that names something that
does not exist, goes to the dead-letter topic with the reason in a header.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy.exc
from prometheus_client import Counter, Histogram

from parley.settings import Settings
from persistence.backoff import Backoff
from persistence.database import create_engine
from persistence.errors import DatabaseUnavailable
from persistence.store import AppendResult, IncomingMessage, MessageStore
from streams.errors import InvalidEvent
from streams.events import AgentMessage, VisitorMessage

logger = logging.getLogger("parley.agent")

BATCH_SIZE = 200  # events per transaction
# Faust's take() wakes up once per window even when nothing arrives: at 5 ms that
# was 400 wake-ups a second for the two agents, 2.5 % of a core in an idle worker.
BATCH_WINDOW = 0.02  # seconds to wait for a batch to fill
LOUD_AFTER = 5  # consecutive failures before a retry is logged as an error

STORED = Counter("parley_agent_messages_stored_total", "Messages stored by the agent")
DUPLICATES = Counter("parley_agent_duplicates_total", "Redelivered messages recognised")
BATCH_SECONDS = Histogram("parley_agent_batch_seconds", "Time to store one batch")
DEAD_LETTERS = Counter("parley_agent_dead_letters_total", "Events sent to the dead-letter topic")


class PersistenceWorker:
    """Stores decoded events; the Faust agents below only feed it batches."""

    def __init__(self, *, store: MessageStore) -> None:
        self._store = store

    async def store_batch(self, batch: list[IncomingMessage]) -> AppendResult:
        """Retry until the batch is stored: skipping would lose accepted messages."""
        backoff = Backoff()
        failures = 0
        while True:
            try:
                result = await self._store.append(batch)
            except (DatabaseUnavailable, sqlalchemy.exc.DBAPIError) as exc:
                # Unavailable: wait for PostgreSQL. A conflict or deadlock with another
                # worker (a rebalance zombie): the next attempt sees its rows.
                failures += 1
                delay = backoff.next()
                logger.log(
                    logging.ERROR if failures >= LOUD_AFTER else logging.WARNING,
                    "storing a batch of %d failed (%s); retrying in %.1fs",
                    len(batch),
                    type(exc).__name__,
                    delay,
                    extra={"action": "agent.retry"},
                )
                await asyncio.sleep(delay)
                continue
            STORED.inc(len(result.stored))
            DUPLICATES.inc(result.duplicates)
            return result


def decode_visitor_message(raw: Any) -> IncomingMessage:
    event = VisitorMessage.from_json(raw)
    return IncomingMessage(
        project_id=event.project_id,
        visitor_uid=event.visitor_uid,
        temp_id=event.temp_id,
        content=event.content,
        session_metadata=event.session_metadata,
    )


def decode_agent_message(raw: Any) -> IncomingMessage:
    event = AgentMessage.from_json(raw)
    return IncomingMessage(
        project_id=event.project_id,
        visitor_uid=event.visitor_uid,
        temp_id=event.temp_id,
        content=event.content,
        sender_type="agent",
        conversation_id=event.conversation_id,
        agent_id=event.agent_id,
    )


def install_persistence_agent(app: Any, settings: Settings) -> list[Any]:
    """Declare the topics and the two persistence agents on a configured Faust app."""
    dead_letters = app.topic(
        settings.dead_letter_topic, value_serializer="raw", key_serializer="raw"
    )

    def persistence_agent(topic_name: str, decode: Callable[[Any], IncomingMessage]) -> Any:
        topic = app.topic(
            topic_name,
            key_type=bytes,
            value_type=bytes,
            value_serializer="raw",
            key_serializer="raw",
            partitions=settings.topic_partitions,
        )

        # concurrency stays 1: with more, Faust can commit past an unfinished message.
        async def persist(stream: Any) -> None:
            engine = create_engine(settings.sqlalchemy_url, pool_size=2)
            worker = PersistenceWorker(store=MessageStore(engine=engine))
            try:
                async for raw_batch in stream.take(BATCH_SIZE, within=BATCH_WINDOW):
                    await store_raw_batch(worker, raw_batch, decode, dead_letters)
            finally:
                await engine.dispose()

        return app.agent(topic, name=f"parley.persist.{topic_name}")(persist)

    return [
        persistence_agent(settings.visitor_topic, decode_visitor_message),
        persistence_agent(settings.agent_topic, decode_agent_message),
    ]


async def store_raw_batch(
    worker: PersistenceWorker,
    raw_batch: list[Any],
    decode: Callable[[Any], IncomingMessage],
    dead_letters: Any,
) -> None:
    began = time.perf_counter()
    batch: list[IncomingMessage] = []
    origin: dict[int, Any] = {}  # id(message) -> the raw value it came from
    for raw in raw_batch:
        try:
            message = decode(raw)
        except InvalidEvent as exc:
            await dead_letter(dead_letters, raw, str(exc))
            continue
        batch.append(message)
        origin[id(message)] = raw
    result = await worker.store_batch(batch)
    BATCH_SECONDS.observe(time.perf_counter() - began)
    for message, reason in result.rejected:
        await dead_letter(dead_letters, origin[id(message)], reason)
    logger.debug(
        "stored a batch of %d in %.1f ms",
        len(batch),
        (time.perf_counter() - began) * 1000,
        extra={"action": "agent.batch"},
    )


async def dead_letter(topic: Any, raw: Any, reason: str) -> None:
    DEAD_LETTERS.inc()
    logger.error("dead-lettered an event: %s", reason, extra={"action": "agent.dead_letter"})
    value = raw if isinstance(raw, bytes) else str(raw).encode()
    await topic.send(value=value, headers=[("error", reason.encode())])

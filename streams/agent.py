"""The persistence agent: batches of visitor messages into PostgreSQL, at least once.

Faust acks a ``take`` batch only when the loop asks for the next one, so offsets
move past a message only after the transaction that stored it committed. A
database outage stalls the agent (retrying with backoff) instead of skipping
messages; a value that is not a Parley event goes to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import sqlalchemy.exc
from prometheus_client import Counter, Histogram

from parley.settings import Settings
from persistence.backoff import Backoff
from persistence.database import create_engine
from persistence.errors import DatabaseUnavailable
from persistence.store import AppendResult, IncomingMessage, MessageStore
from streams.errors import InvalidEvent
from streams.events import VisitorMessage

logger = logging.getLogger("parley.agent")

BATCH_SIZE = 200  # events per transaction
BATCH_WINDOW = 0.005  # seconds to wait for a batch to fill
CONFLICT_RETRIES = 5  # attempts when concurrent writers collide on a unique key

STORED = Counter("parley_agent_messages_stored_total", "Messages stored by the agent")
DUPLICATES = Counter("parley_agent_duplicates_total", "Redelivered messages recognised")
BATCH_SECONDS = Histogram("parley_agent_batch_seconds", "Time to store one batch")
DEAD_LETTERS = Counter("parley_agent_dead_letters_total", "Events sent to the dead-letter topic")


class PersistenceWorker:
    """Stores decoded events; the Faust agent below only feeds it batches."""

    def __init__(self, *, store: MessageStore) -> None:
        self._store = store

    async def store_batch(self, batch: list[IncomingMessage]) -> AppendResult:
        """Retry until the batch is stored: skipping would lose accepted messages."""
        backoff = Backoff()
        conflicts = 0
        while True:
            try:
                result = await self._store.append(batch)
            except DatabaseUnavailable as exc:
                delay = backoff.next()
                logger.warning(
                    "database unavailable (%s); retrying batch of %d in %.1fs",
                    exc,
                    len(batch),
                    delay,
                    extra={"action": "agent.retry"},
                )
                await asyncio.sleep(delay)
                continue
            except sqlalchemy.exc.IntegrityError as exc:
                # Another worker (a rebalance zombie) wrote the same conversation first;
                # the next attempt sees its rows and stores only what is missing.
                conflicts += 1
                level = logging.ERROR if conflicts >= CONFLICT_RETRIES else logging.WARNING
                logger.log(
                    level,
                    "unique key conflict (%s); retrying batch",
                    type(exc.orig).__name__,
                    extra={"action": "agent.conflict"},
                )
                await asyncio.sleep(backoff.next())
                continue
            STORED.inc(len(result.stored))
            DUPLICATES.inc(result.duplicates)
            return result


def decode(raw: Any) -> IncomingMessage:
    event = VisitorMessage.from_json(raw)
    return IncomingMessage(
        project_id=event.project_id,
        visitor_uid=event.visitor_uid,
        temp_id=event.temp_id,
        content=event.content,
        session_metadata=event.session_metadata,
    )


def install_persistence_agent(app: Any, settings: Settings) -> Any:
    """Declare the topics and the agent on a configured Faust app."""
    visitor_topic = app.topic(
        settings.visitor_topic,
        key_type=bytes,
        value_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
        partitions=settings.topic_partitions,
    )
    dead_letters = app.topic(
        settings.dead_letter_topic, value_serializer="raw", key_serializer="raw"
    )

    # concurrency stays 1: with more, Faust can commit past an unfinished message.
    @app.agent(visitor_topic, name="parley.persist-visitor-messages")  # type: ignore[untyped-decorator]
    async def persist_visitor_messages(stream: Any) -> None:
        engine = create_engine(settings.sqlalchemy_url, pool_size=2)
        worker = PersistenceWorker(store=MessageStore(engine=engine))
        try:
            async for raw_batch in stream.take(BATCH_SIZE, within=BATCH_WINDOW):
                began = time.perf_counter()
                batch: list[IncomingMessage] = []
                for raw in raw_batch:
                    try:
                        batch.append(decode(raw))
                    except InvalidEvent as exc:
                        await dead_letter(dead_letters, raw, str(exc))
                result = await worker.store_batch(batch)
                BATCH_SECONDS.observe(time.perf_counter() - began)
                logger.debug(
                    "stored a batch of %d in %.1f ms",
                    len(batch),
                    (time.perf_counter() - began) * 1000,
                    extra={"action": "agent.batch"},
                )
                for message in result.unknown_project:
                    await dead_letter(
                        dead_letters,
                        VisitorMessage(
                            project_id=message.project_id,
                            visitor_uid=message.visitor_uid,
                            temp_id=message.temp_id,
                            content=message.content,
                            session_metadata=message.session_metadata,
                        ).to_json(),
                        f"project {message.project_id} does not exist",
                    )
        finally:
            await engine.dispose()

    return persist_visitor_messages


async def dead_letter(topic: Any, raw: Any, reason: str) -> None:
    DEAD_LETTERS.inc()
    logger.error("dead-lettered an event: %s", reason, extra={"action": "agent.dead_letter"})
    value = raw if isinstance(raw, bytes) else str(raw).encode()
    await topic.send(value=value, headers=[("error", reason.encode())])

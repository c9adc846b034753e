"""The persistence agents: batches of visitor messages and agent replies into PostgreSQL.

Acknowledgements are the agent's own: it takes the events from its stream
buffer in bulk (:class:`~streams.buffer_reader.BufferReader`, past Faust's
per-event stream iterator), decodes each one and puts it into an
:class:`~streams.intake.Intake`; a storer task takes batches from it and acks a
batch's events only after their messages are committed and their dead letters
confirmed. Decoding happens while the storer waits on PostgreSQL. There are
``settings.agent_storers`` intakes and storers (``PARLEY_AGENT_STORERS``), each for
its own share of the partitions.
Reading goes on while a batch is stored, so under load the next batch is
whatever arrived meanwhile (up to ``BATCH_SIZE``), and at low load a message
is stored at once, alone. A stopping worker abandons the batches in hand and
whatever the intakes hold, unacknowledged; the next worker receives them
again, and the store is idempotent, so the redelivered part that was stored is
recognised.

No event can hold up the others: a value that is not a storable Parley event is
dead-lettered when it is decoded, and a batch the database refuses is split to
find the events it refuses (:mod:`streams.batching`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import faust
from prometheus_client import Histogram

from parley.settings import Settings
from persistence.database import create_engine
from persistence.store import IncomingMessage, MessageStore
from streams.batching import BatchStorer
from streams.buffer_reader import BufferReader
from streams.dead_letters import INVALID, DeadLetters, FaustDeadLetterSink, RawEvent
from streams.errors import InvalidEvent, WorkerStopping
from streams.events import AgentMessage, VisitorMessage
from streams.intake import Intake, IntakeClosed

logger = logging.getLogger("parley.agent")

BATCH_SIZE = 1000  # events per transaction, at most
INTAKE_CAPACITY = 2 * BATCH_SIZE  # events read ahead of each storer
DISPOSE_TIMEOUT = 2.0  # seconds to close the pool; PostgreSQL may be gone

BATCH_SECONDS = Histogram("parley_agent_batch_seconds", "Time to store one batch")

Decoder = Callable[[bytes | None], IncomingMessage]


class RawSchema(faust.Schema[bytes | None, bytes | None]):
    """Keys and values as the broker holds them (bytes or None), past Faust's codecs.

    The agent decodes values itself (:class:`BatchHandler`); Faust's "raw" codec
    would look the codec up and return the same bytes, for each message.
    """

    def loads_key(self, app: Any, message: Any, **_: Any) -> bytes | None:
        key: bytes | None = message.key
        return key

    def loads_value(self, app: Any, message: Any, **_: Any) -> bytes | None:
        value: bytes | None = message.value
        return value


def decode_visitor_message(raw: bytes | None) -> IncomingMessage:
    event = VisitorMessage.from_json(raw)
    return IncomingMessage(
        project_id=event.project_id,
        visitor_uid=event.visitor_uid,
        temp_id=event.temp_id,
        content=event.content,
        session_metadata=event.session_metadata,
        accepted_at=event.accepted_at or None,
    )


def decode_agent_message(raw: bytes | None) -> IncomingMessage:
    event = AgentMessage.from_json(raw)
    return IncomingMessage(
        project_id=event.project_id,
        visitor_uid=event.visitor_uid,
        temp_id=event.temp_id,
        content=event.content,
        sender_type="agent",
        conversation_id=event.conversation_id,
        agent_id=event.agent_id,
        accepted_at=event.accepted_at or None,
    )


class Decoded(NamedTuple):
    """An event with its message, or with the reason it cannot be stored.

    ``event`` is a :class:`RawEvent` or a Faust event: the plain record is made
    only for a dead letter, not for each event.
    """

    event: Any
    message: IncomingMessage | None
    invalid: str  # empty when ``message`` is set


class BatchHandler:
    """Decodes, stores and dead-letters one batch; the caller acks it afterwards."""

    def __init__(self, *, decode: Decoder, storer: BatchStorer, dead_letters: DeadLetters) -> None:
        self._decode = decode
        self._storer = storer
        self._dead_letters = dead_letters

    def decode(self, value: bytes | None, event: Any) -> Decoded:
        """Decode one event's value, or say why it is invalid; never raises."""
        try:
            return Decoded(event, self._decode(value), "")
        except InvalidEvent as exc:
            return Decoded(event, None, str(exc))
        except Exception as exc:
            # A decoding bug must not stall the partition either.
            logger.exception("decoding an event failed", extra={"action": "agent.decode_error"})
            return Decoded(event, None, f"cannot be decoded: {exc!r}")

    async def handle(self, events: Sequence[RawEvent]) -> None:
        """Decode the events, then as :meth:`handle_decoded`."""
        await self.handle_decoded([self.decode(event.value, event) for event in events])

    async def handle_decoded(self, decoded: Sequence[Decoded]) -> None:
        """Return once every event is stored or dead-lettered.

        Raises :class:`WorkerStopping` if the worker stops first: then nothing of
        the batch may be acknowledged.
        """
        began = time.perf_counter()
        batch: list[IncomingMessage] = []
        source: dict[int, Any] = {}  # id(message) -> the event it came from
        invalid: list[tuple[Any, str]] = []
        for event, message, why in decoded:
            if message is None:
                invalid.append((event, why))
                continue
            batch.append(message)
            source[id(message)] = event
        outcome = await self._storer.store(batch)
        for event, reason in invalid:
            await self._dead_letters.send(as_raw(event), reason=reason, kind=INVALID)
        for refusal in outcome.refused:
            await self._dead_letters.send(
                as_raw(source[id(refusal.message)]), reason=refusal.reason, kind=refusal.kind
            )
        BATCH_SECONDS.observe(time.perf_counter() - began)
        logger.debug(
            "stored a batch of %d in %.1f ms",
            len(batch),
            (time.perf_counter() - began) * 1000,
            extra={"action": "agent.batch"},
        )


def storer_for(partition: int, *, storers: int) -> int:
    """The storer of a partition: always the same one, so a partition's events (and
    with them each conversation's, which all share one partition key) are stored
    and acked in order, by one transaction at a time.

    With several storers, each has its own connection: while one waits on
    PostgreSQL another stores (see ``parley.settings.DEFAULT_AGENT_STORERS``)."""
    return partition % storers


def as_raw(event: Any) -> RawEvent:
    return event if isinstance(event, RawEvent) else raw_event(event)


def raw_event(event: Any) -> RawEvent:
    """A Faust event (raw serializers) as the plain record the handler reads."""
    message = event.message
    headers = event.headers or ()
    return RawEvent(
        value=event.value,
        key=event.key,
        # As they came; a dead letter normalises the few it carries.
        headers=list(headers.items() if isinstance(headers, dict) else headers),
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
    )


async def store_batches(
    *,
    intake: Intake[tuple[Any, Decoded]],
    handler: BatchHandler,
    ack: Callable[[Any], Awaitable[Any]],
) -> None:
    """Store what the intake holds, a batch at a time, acking each batch once stored.

    The intake holds each Faust event with its decoded form: the agent's loop
    decodes while the storer waits on PostgreSQL, so decoding is off the storer's path.

    Returns when the worker stops during a batch (nothing of it acked); a stop
    that cancels this task abandons the batch in hand the same way.
    """
    while True:
        taken = await intake.take()
        try:
            await handler.handle_decoded([decoded for _, decoded in taken])
        except (WorkerStopping, asyncio.CancelledError) as exc:
            # Faust cancels the agent when it stops, usually before the retry
            # loop polls the stop: either way, nothing is acked.
            logger.warning(
                "stopping with a batch of %d unstored; it will be redelivered",
                len(taken),
                extra={"action": "agent.stopping"},
            )
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for event, _ in taken:
            await ack(event)


def install_persistence_agent(app: Any, settings: Settings) -> list[Any]:
    """Declare the topics and the two persistence agents on a configured Faust app."""
    dead_letter_topic = app.topic(
        settings.dead_letter_topic, value_serializer="raw", key_serializer="raw"
    )

    def stopping() -> bool:
        return bool(app.should_stop)

    def persistence_agent(topic_name: str, decode: Decoder) -> Any:
        topic = app.topic(
            topic_name,
            schema=RawSchema(),
            key_type=bytes,
            value_type=bytes,
            value_serializer="raw",
            key_serializer="raw",
            partitions=settings.topic_partitions,
        )

        # concurrency stays 1: with more, Faust can commit past an unfinished message.
        async def persist(stream: Any) -> None:
            # No pre-ping: a batch that meets a dead connection is retried anyway.
            storers_count = settings.agent_storers
            engine = create_engine(settings.sqlalchemy_url, pool_size=storers_count, pre_ping=False)
            handler = BatchHandler(
                decode=decode,
                storer=BatchStorer(store=MessageStore(engine=engine), stopping=stopping),
                dead_letters=DeadLetters(
                    sink=FaustDeadLetterSink(topic=dead_letter_topic), stopping=stopping
                ),
            )
            intakes: list[Intake[tuple[Any, Decoded]]] = [
                Intake(batch_size=BATCH_SIZE, capacity=INTAKE_CAPACITY)
                for _ in range(storers_count)
            ]
            storers = [
                asyncio.create_task(
                    store_batches(intake=intake, handler=handler, ack=stream.ack),
                    name=f"parley.store.{topic_name}.{index}",
                )
                for index, intake in enumerate(intakes)
            ]

            def close_intakes(_: object) -> None:
                # One storer ending ends the agent: its partitions would stall.
                for intake in intakes:
                    intake.close()

            for storer in storers:
                storer.add_done_callback(close_intakes)
            try:
                # Manual acks: the storers ack a batch once it is stored.
                reader = BufferReader(stream=stream)
                while True:
                    try:
                        events = await reader.read()
                    except StopAsyncIteration:
                        break  # Faust stops the actor by throwing this into its channel
                    try:
                        for event in events:
                            index = storer_for(event.message.partition, storers=storers_count)
                            await intakes[index].put((event, handler.decode(event.value, event)))
                    except IntakeClosed:
                        break
                for storer in storers:
                    if storer.done():
                        storer.result()  # a storer that crashed crashes the agent
            finally:
                for storer in storers:
                    storer.cancel()
                for storer in storers:
                    with contextlib.suppress(asyncio.CancelledError):
                        await storer
                try:
                    await asyncio.wait_for(engine.dispose(), DISPOSE_TIMEOUT)
                except Exception as exc:  # a dead server's connections: nothing to keep
                    logger.warning(
                        "closing the database pool failed: %r",
                        exc,
                        extra={"action": "agent.dispose_failed"},
                    )

        return app.agent(topic, name=f"parley.persist.{topic_name}")(persist)

    return [
        persistence_agent(settings.visitor_topic, decode_visitor_message),
        persistence_agent(settings.agent_topic, decode_agent_message),
    ]

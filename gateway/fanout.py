"""Relayed events from Redis to this gateway's own sockets.

Every gateway subscribes to the events channel and emits only to sockets it
holds (python-socketio's in-memory manager), so a dashboard connected to any
gateway receives each event exactly once, however many gateways run. The relay
publishes at least once; ``eventId`` lets this gateway drop a repeat.

When this gateway's subscription was lost and is back, whatever the relay
published meanwhile reached none of its sockets, and none of them noticed:
:meth:`Fanout.resync` emits ``resync`` (no payload) to every socket it holds, and
the clients catch up from the database (a widget with ``identify {lastSeq}``, a
dashboard with ``sync``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

from prometheus_client import Counter, Histogram

from gateway import codec
from persistence.outbox import (
    CONTEXT_UPDATED,
    CONVERSATION_UPDATED,
    MESSAGE_CREATED,
    MESSAGES_DELIVERED,
    MESSAGES_READ,
)

logger = logging.getLogger("parley.fanout")

SEEN_EVENTS = 50_000  # event ids remembered for dropping repeats

FANNED_OUT = Counter("parley_gateway_events_fanned_out_total", "Relayed events emitted")
REPEATS = Counter("parley_gateway_events_repeated_total", "Relayed events dropped as repeats")
# From a gateway's broker-confirmed acceptance (acceptedAt, another gateway's clock
# perhaps) to this gateway's emission: the whole path, worker, database and relay.
END_TO_END = Histogram(
    "parley_gateway_end_to_end_seconds",
    "Seconds from a message's acceptance to its emission by this gateway",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


def observe_latency(accepted_at: object, *, now: dt.datetime | None = None) -> float | None:
    """Record acceptance → now; None (nothing recorded) for a missing or bad timestamp."""
    if not isinstance(accepted_at, str) or not accepted_at:
        return None
    try:
        accepted = dt.datetime.fromisoformat(accepted_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if accepted.tzinfo is None:
        return None
    seconds = max(((now or dt.datetime.now(dt.UTC)) - accepted).total_seconds(), 0.0)
    END_TO_END.observe(seconds)
    return seconds


RESYNCS = Counter(
    "parley_gateway_resyncs_total", "Times this gateway told its sockets to catch up (resync)"
)
RESYNC = "resync"  # the event that tells a client to catch up from the database


def visitor_room(project_id: int, visitor_uid: str) -> str:
    return f"visitor:{project_id}:{visitor_uid}"


def project_room(project_id: int) -> str:
    return f"project:{project_id}"


class Emitter(Protocol):
    async def emit(self, event: str, data: Any = None, *, to: str | None = None) -> None: ...


class RecentIds:
    """A bounded set: remembers the last ``size`` ids."""

    def __init__(self, size: int = SEEN_EVENTS) -> None:
        self._order: collections.deque[object] = collections.deque()
        self._ids: set[object] = set()
        self._size = size

    def add(self, item: object) -> bool:
        """Record ``item``; False when it was already there."""
        if item in self._ids:
            return False
        self._ids.add(item)
        self._order.append(item)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return True


def agent_room(agent_id: int) -> str:
    """Every socket of one agent: where that agent's own acks go."""
    return f"agent:{agent_id}"


class Fanout:
    """Turns one relayed event into the Socket.IO emits it stands for.

    It also resolves waiters: an HTTP reply waits here for its stored message.
    """

    def __init__(self, *, emitter: Emitter) -> None:
        self._emitter = emitter
        self._seen = RecentIds()
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}

    @contextlib.contextmanager
    def awaiting(self, temp_id: str) -> Iterator[asyncio.Future[dict[str, Any]]]:
        """A future for the stored message with this tempId, registered for the block.

        Register before producing, so the relayed event cannot slip past unseen.
        """
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[temp_id] = future
        try:
            yield future
        finally:
            if self._waiters.get(temp_id) is future:
                del self._waiters[temp_id]
            future.cancel()

    async def resync(self) -> None:
        """Tell every socket of this gateway to catch up: events may have been missed."""
        # No room: with the in-memory manager this reaches exactly this gateway's sockets.
        await self._emitter.emit(RESYNC)
        RESYNCS.inc()
        logger.warning(
            "fan-out resubscribed; told this gateway's sockets to resync",
            extra={"action": "fanout.resync"},
        )

    async def deliver(self, raw: str | bytes) -> None:
        try:
            event = codec.loads(raw)
            event_id = event["eventId"]
            kind = event["type"]
            project = (
                event["projectId"] if kind != MESSAGE_CREATED else event["message"]["projectId"]
            )
        except (ValueError, KeyError, TypeError):
            logger.error("dropped a malformed relayed event", extra={"action": "fanout.malformed"})
            return
        if not self._seen.add(event_id):
            REPEATS.inc()
            return
        handler = self._handlers.get(kind)
        if handler is None:
            logger.warning("unknown relayed event type %s", kind, extra={"action": "fanout.skip"})
            return
        await handler(self, event, project)
        FANNED_OUT.inc()

    async def _message_created(self, event: dict[str, Any], project: int) -> None:
        message = event["message"]
        visitor = visitor_room(project, message["visitorUid"])
        ack = {"tempId": message["tempId"], "finalMessage": message}
        if message["senderType"] == "agent":
            await self._emitter.emit("agentReplied", message, to=visitor)
            await self._emitter.emit("messageSent", ack, to=agent_room(message["agentId"]))
        else:
            await self._emitter.emit("messageSent", ack, to=visitor)
        await self._emitter.emit("newMessage", message, to=project_room(project))
        observe_latency(event.get("acceptedAt"))
        waiter = self._waiters.get(message["tempId"])
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    async def _conversation_updated(self, event: dict[str, Any], project: int) -> None:
        await self._emitter.emit(
            "conversationUpdated",
            {"conversationId": event["conversationId"], "fields": event["fields"]},
            to=project_room(project),
        )

    async def _messages_read(self, event: dict[str, Any], project: int) -> None:
        body = {"conversationId": event["conversationId"], "upToSeq": event["upToSeq"]}
        if event["by"] == "agent":
            room = visitor_room(project, event["visitorUid"])
        else:
            room = project_room(project)
        await self._emitter.emit("messagesRead", {**body, "by": event["by"]}, to=room)

    async def _messages_delivered(self, event: dict[str, Any], project: int) -> None:
        await self._emitter.emit(
            "messagesDelivered",
            {"conversationId": event["conversationId"], "upToSeq": event["upToSeq"]},
            to=project_room(project),
        )

    async def _context_updated(self, event: dict[str, Any], project: int) -> None:
        await self._emitter.emit(
            "visitorContextUpdated",
            {"conversationId": event["conversationId"], "currentUrl": event["currentUrl"]},
            to=project_room(project),
        )

    _handlers: dict[str, Callable[[Fanout, dict[str, Any], int], Awaitable[None]]] = {
        MESSAGE_CREATED: _message_created,
        CONVERSATION_UPDATED: _conversation_updated,
        MESSAGES_READ: _messages_read,
        MESSAGES_DELIVERED: _messages_delivered,
        CONTEXT_UPDATED: _context_updated,
    }

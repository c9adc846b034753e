"""Relayed events from Redis to this gateway's own sockets.

Every gateway subscribes to the events channel and emits only to sockets it
holds (python-socketio's in-memory manager), so a dashboard connected to any
gateway receives each event exactly once, however many gateways run. The relay
publishes at least once; ``eventId`` lets this gateway drop a repeat.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from typing import Any, Protocol

import redis.asyncio as aioredis
import redis.exceptions
from prometheus_client import Counter

from persistence.backoff import Backoff
from persistence.outbox import MESSAGE_CREATED

logger = logging.getLogger("parley.fanout")

SEEN_EVENTS = 50_000  # event ids remembered for dropping repeats
READ_TIMEOUT = 1.0  # seconds per pubsub read, so cancellation is prompt

FANNED_OUT = Counter("parley_gateway_events_fanned_out_total", "Relayed events emitted")
REPEATS = Counter("parley_gateway_events_repeated_total", "Relayed events dropped as repeats")


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


class Fanout:
    """Turns one relayed event into the Socket.IO emits it stands for."""

    def __init__(self, *, emitter: Emitter) -> None:
        self._emitter = emitter
        self._seen = RecentIds()

    async def deliver(self, raw: str | bytes) -> None:
        try:
            event = json.loads(raw)
            event_id = event["eventId"]
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            logger.error("dropped a malformed relayed event", extra={"action": "fanout.malformed"})
            return
        if not self._seen.add(event_id):
            REPEATS.inc()
            return
        if kind == MESSAGE_CREATED and isinstance(event.get("message"), dict):
            message = event["message"]
            project, uid = message["projectId"], message["visitorUid"]
            await self._emitter.emit(
                "messageSent",
                {"tempId": message["tempId"], "finalMessage": message},
                to=visitor_room(project, uid),
            )
            await self._emitter.emit("newMessage", message, to=project_room(project))
            FANNED_OUT.inc()
        else:
            logger.warning("unknown relayed event type %s", kind, extra={"action": "fanout.skip"})


class Subscriber:
    """Reads the events channel forever, resubscribing with backoff after Redis drops."""

    def __init__(self, *, client: aioredis.Redis, channel: str, fanout: Fanout) -> None:
        self._client = client
        self._channel = channel
        self._fanout = fanout
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self.subscribed.set()
                backoff.reset()
                logger.info(
                    "subscribed to %s", self._channel, extra={"action": "fanout.subscribed"}
                )
                while True:
                    message = await pubsub.get_message(timeout=READ_TIMEOUT)
                    if message is not None and message["type"] == "message":
                        await self._deliver(message["data"])
            except asyncio.CancelledError:
                raise
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                OSError,
            ) as exc:
                self.subscribed.clear()
                delay = backoff.next()
                logger.warning(
                    "redis subscription lost (%s); resubscribing in %.1fs",
                    type(exc).__name__,
                    delay,
                    extra={"action": "fanout.reconnect"},
                )
                await asyncio.sleep(delay)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _deliver(self, data: str | bytes) -> None:
        try:
            await self._fanout.deliver(data)
        except asyncio.CancelledError:
            raise
        except Exception:
            # One bad event must not stop delivery of the ones behind it.
            logger.exception("could not deliver a relayed event", extra={"action": "fanout.error"})

"""Ephemeral events (typing, presence) between gateways, over Redis pub/sub.

Typing indicators and presence changes are never stored and never pass through
the broker or the outbox. A gateway publishes each one on
``<events_channel>:ephemeral``; every gateway, the publisher included, emits it
to its own sockets in the named room (python-socketio's in-memory manager), so
each socket receives each event once however many gateways run. Pub/sub is
at-most-once, which suits state that expires or is re-sent anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from prometheus_client import Counter

from gateway.fanout import Emitter
from persistence.backoff import Backoff

logger = logging.getLogger("parley.ephemeral")

CHANNEL_SUFFIX = ":ephemeral"
READ_TIMEOUT = 1.0  # seconds per pubsub read, so cancellation is prompt
# Only these reach sockets: a stray publisher on the channel cannot make a
# gateway emit arbitrary events.
EVENTS = frozenset({"visitorIsTyping", "agentIsTyping", "visitorStatusChanged"})
ROOM_PREFIXES = ("project:", "visitor:")

PUBLISHED = Counter(
    "parley_gateway_ephemeral_published_total", "Ephemeral events this gateway published", ["event"]
)
PUBLISH_FAILURES = Counter(
    "parley_gateway_ephemeral_publish_failures_total",
    "Ephemeral events lost because Redis did not take them",
)
EMITTED = Counter(
    "parley_gateway_ephemeral_emitted_total", "Ephemeral events emitted to local sockets", ["event"]
)


def ephemeral_channel(events_channel: str) -> str:
    return events_channel + CHANNEL_SUFFIX


def encode(event: str, room: str, data: dict[str, Any]) -> str:
    """The wire form every gateway's subscriber reads."""
    return json.dumps({"event": event, "room": room, "data": data}, separators=(",", ":"))


def decode(raw: str | bytes) -> tuple[str, str, dict[str, Any]] | None:
    """``(event, room, data)``, or None for anything a gateway should not emit."""
    try:
        message = json.loads(raw)
        event, room, data = message["event"], message["room"], message["data"]
    except (ValueError, KeyError, TypeError):
        return None
    if (
        event not in EVENTS
        or not isinstance(room, str)
        or not room.startswith(ROOM_PREFIXES)
        or not isinstance(data, dict)
    ):
        return None
    return event, room, data


class EphemeralBus:
    """Publishes ephemeral events for every gateway to emit to its own sockets."""

    def __init__(self, *, client: aioredis.Redis, channel: str) -> None:
        self._client = client
        self.channel = channel

    async def publish(self, event: str, room: str, data: dict[str, Any]) -> bool:
        """Publish once; False (logged) when Redis is unreachable.

        Never raises for Redis trouble: a typing indicator is not worth failing
        the caller, and the next state change or the timeout corrects it.
        """
        try:
            await self._client.publish(self.channel, encode(event, room, data))
        except (redis.exceptions.RedisError, OSError) as exc:
            PUBLISH_FAILURES.inc()
            logger.warning(
                "could not publish %s (%s)",
                event,
                type(exc).__name__,
                extra={"action": "ephemeral.publish_failed"},
            )
            return False
        PUBLISHED.labels(event).inc()
        return True


class EphemeralSubscriber:
    """Reads the ephemeral channel forever and emits each event to local sockets.

    Resubscribes with backoff after Redis drops, like :class:`gateway.fanout.Subscriber`.
    """

    def __init__(self, *, client: aioredis.Redis, channel: str, emitter: Emitter) -> None:
        self._client = client
        self._channel = channel
        self._emitter = emitter
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
                    "subscribed to %s", self._channel, extra={"action": "ephemeral.subscribed"}
                )
                while True:
                    message = await pubsub.get_message(timeout=READ_TIMEOUT)
                    if message is not None and message["type"] == "message":
                        await self.deliver(message["data"])
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
                    "ephemeral subscription lost (%s); resubscribing in %.1fs",
                    type(exc).__name__,
                    delay,
                    extra={"action": "ephemeral.reconnect"},
                )
                await asyncio.sleep(delay)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def deliver(self, raw: str | bytes) -> None:
        decoded = decode(raw)
        if decoded is None:
            logger.error(
                "dropped a malformed ephemeral event", extra={"action": "ephemeral.malformed"}
            )
            return
        event, room, data = decoded
        try:
            await self._emitter.emit(event, data, to=room)
        except asyncio.CancelledError:
            raise
        except Exception:
            # One failed emit must not stop the events behind it.
            logger.exception(
                "could not emit an ephemeral event", extra={"action": "ephemeral.error"}
            )
            return
        EMITTED.labels(event).inc()

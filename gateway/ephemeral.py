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
import json
import logging
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from prometheus_client import Counter

from gateway.fanout import Emitter

logger = logging.getLogger("parley.ephemeral")

CHANNEL_SUFFIX = ":ephemeral"
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


class EphemeralDelivery:
    """Emits each ephemeral event to this gateway's own sockets.

    :class:`gateway.subscription.ChannelSubscription` feeds it from the channel.
    """

    def __init__(self, *, emitter: Emitter) -> None:
        self._emitter = emitter

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

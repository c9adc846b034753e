"""A Redis pub/sub subscription that survives Redis restarts.

Both of the gateway's channels use it: relayed events (``gateway.fanout``) and
ephemeral typing/presence events (``gateway.ephemeral``). Pub/sub is at-most-once,
so whatever is published while the subscription is being rebuilt is lost;
clients catch up from the database by seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
import redis.exceptions

from persistence.backoff import Backoff

logger = logging.getLogger("parley.subscription")

READ_TIMEOUT = 1.0  # seconds per pubsub read, so cancellation is prompt
DROPPED = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class ChannelSubscription:
    """Hands every message of ``channel`` to ``deliver``, resubscribing with backoff."""

    def __init__(
        self,
        *,
        client: aioredis.Redis,
        channel: str,
        deliver: Callable[[str | bytes], Awaitable[None]],
        name: str,
    ) -> None:
        self._client = client
        self._channel = channel
        self._deliver = deliver
        self._name = name
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
                    "subscribed to %s", self._channel, extra={"action": f"{self._name}.subscribed"}
                )
                while True:
                    message = await pubsub.get_message(timeout=READ_TIMEOUT)
                    if message is not None and message["type"] == "message":
                        await self._handle(message["data"])
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
                    "%s subscription lost (%s); resubscribing in %.1fs",
                    self._name,
                    type(exc).__name__,
                    delay,
                    extra={"action": f"{self._name}.reconnect"},
                )
                await asyncio.sleep(delay)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _handle(self, data: str | bytes) -> None:
        try:
            await self._deliver(data)
        except asyncio.CancelledError:
            raise
        except Exception:
            # One bad event must not stop delivery of the ones behind it.
            logger.exception(
                "could not deliver a %s event", self._name, extra={"action": f"{self._name}.error"}
            )

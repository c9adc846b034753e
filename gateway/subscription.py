"""A Redis pub/sub subscription that survives Redis restarts and refusals.

Both of the gateway's channels use it: relayed events (``gateway.fanout``) and
ephemeral typing/presence events (``gateway.ephemeral``). Pub/sub is at-most-once,
so whatever is published while the subscription is being rebuilt is lost. That
is why, once the channel is subscribed again after a loss, ``on_resubscribed``
runs: the fan-out uses it to tell its sockets to catch up from the database.

Only cancellation ends :meth:`ChannelSubscription.run`. Any other error — a
dropped connection, a ``NOPERM`` refusal, an unexpected reply — is logged and the
subscription is rebuilt with backoff.

Messages already read from the connection are handled back to back, without a
read timer each (:meth:`ChannelSubscription._drain`). With an emitter that never
suspends (:class:`gateway.broadcast.Broadcast`), the events of one wake-up reach
each socket's send queue together, and its writer sends them in one turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from persistence.backoff import Backoff

logger = logging.getLogger("parley.subscription")

READ_TIMEOUT = 1.0  # seconds per pubsub read, so cancellation is prompt
CONFIRM_TIMEOUT = 5.0  # seconds Redis gets to confirm a SUBSCRIBE
DRAIN_LIMIT = 500  # buffered messages handled back to back before other tasks get a turn
DROPPED = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class ChannelSubscription:
    """Hands every message of ``channel`` to ``deliver``, resubscribing with backoff.

    ``subscribed`` is set only while Redis has confirmed the subscription (health
    checks read it). ``on_resubscribed`` runs after every confirmed subscription
    that follows a lost one, never after the first.
    """

    def __init__(
        self,
        *,
        client: aioredis.Redis,
        channel: str,
        deliver: Callable[[str | bytes], Awaitable[None]],
        name: str,
        on_resubscribed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._channel = channel
        self._deliver = deliver
        self._name = name
        self._on_resubscribed = on_resubscribed
        self._was_subscribed = False  # across restarts of run(), so none is missed
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            pubsub = self._client.pubsub()
            try:
                await self._subscribe(pubsub)
                backoff.reset()
                while True:
                    await self._take(await pubsub.get_message(timeout=READ_TIMEOUT))
                    await self._drain(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next()
                dropped = isinstance(exc, DROPPED)
                logger.log(
                    logging.WARNING if dropped else logging.ERROR,
                    "%s subscription lost (%s: %s); resubscribing in %.1fs",
                    self._name,
                    type(exc).__name__,
                    str(exc)[:200],
                    delay,
                    extra={"action": f"{self._name}.reconnect"},
                    exc_info=not dropped,
                )
            finally:
                self.subscribed.clear()
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)

    async def _subscribe(self, pubsub: aioredis.client.PubSub) -> None:
        """Subscribe, and return only once Redis confirmed it.

        A refusal raises; no confirmation within :data:`CONFIRM_TIMEOUT` raises
        TimeoutError. Either way ``run`` backs off and starts again.
        """
        await pubsub.subscribe(self._channel)
        async with asyncio.timeout(CONFIRM_TIMEOUT):
            while True:
                # A refusal (NOPERM) is the reply to SUBSCRIBE and raises here. A health
                # check's pong may come first; no message can, before the subscription.
                reply = await pubsub.get_message(timeout=READ_TIMEOUT)
                if reply is not None and reply["type"] == "subscribe":
                    break
        self.subscribed.set()
        logger.info("subscribed to %s", self._channel, extra={"action": f"{self._name}.subscribed"})
        if self._was_subscribed and self._on_resubscribed is not None:
            await self._on_resubscribed()
        self._was_subscribed = True

    async def _drain(self, pubsub: aioredis.client.PubSub) -> None:
        """Handle the messages already read from the connection, then return.

        ``get_message(timeout=None)`` arms no read timer (one per message was 8 % of
        the fan-out's CPU); it is called only while the connection holds unread
        bytes, and Redis writes each message whole, so it does not wait on the
        network. Past :data:`DRAIN_LIMIT` the loop yields once, so a long backlog
        does not keep the sockets' writers and handlers waiting.
        """
        connection = pubsub.connection
        for _ in range(DRAIN_LIMIT):
            if connection is None or not await connection.can_read():
                return
            await self._take(await pubsub.get_message(timeout=None))
        await asyncio.sleep(0)

    async def _take(self, message: dict[str, Any] | None) -> None:
        # None: nothing within the timeout, or redis-py's own health-check pong.
        if message is not None and message["type"] == "message":
            await self._handle(message["data"])

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

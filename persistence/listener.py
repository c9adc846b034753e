"""A LISTEN connection that lives outside the pool and rebuilds itself.

A notification only wakes the relay; the outbox table is the truth. After every
(re)connect the listener wakes the relay too, since notifications sent while it
was away are gone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from parley.settings import to_plain_url
from persistence.backoff import Backoff

logger = logging.getLogger("parley.relay.listener")

KEEPALIVE_INTERVAL = 10.0  # seconds between SELECT 1 probes on an idle connection
CONNECT_TIMEOUT = 5.0  # seconds


class NotifyListener:
    """Sets ``wake`` whenever ``channel`` is notified or the connection is rebuilt."""

    def __init__(self, *, database_url: str, channel: str, wake: asyncio.Event) -> None:
        self._url = to_plain_url(database_url)
        self._channel = channel
        self._wake = wake
        self.connected = False

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT)
                await conn.add_listener(self._channel, self._on_notify)
                self.connected = True
                backoff.reset()
                logger.info("listening", extra={"action": "listener.connected"})
                self._wake.set()
                while True:
                    await asyncio.sleep(KEEPALIVE_INTERVAL)
                    # A silent half-open TCP connection would never notify again.
                    await conn.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self.connected = False
                delay = backoff.next()
                logger.warning(
                    "listen connection lost (%s); retrying in %.1fs",
                    type(exc).__name__,
                    delay,
                    extra={"action": "listener.reconnect"},
                )
                await asyncio.sleep(delay)
            finally:
                self.connected = False
                if conn is not None:
                    conn.terminate()

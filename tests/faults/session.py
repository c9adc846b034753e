"""One client's connection to the gateways, rebuilt whenever it drops.

A widget and a dashboard both keep one Socket.IO connection and, when it drops,
try their own gateway and then the others, with a short backoff, until one
answers (a killed gateway comes back on the same port). Socket.IO's own
reconnection is off so that every connect runs the client's catch-up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import socketio

RECONNECT_DELAY = 0.25  # seconds before the first retry; doubles up to RECONNECT_MAX
RECONNECT_MAX = 2.0  # seconds
START_ATTEMPTS = 10  # the first connect of a run must succeed within these attempts
CONNECT_TIMEOUT = 5.0  # seconds for the Socket.IO handshake
CONNECT_FAILURES = (socketio.exceptions.SocketIOError, OSError, TimeoutError)


async def connect(client: socketio.AsyncClient, url: str, auth: dict[str, Any]) -> None:
    """Connect over WebSocket; a failed attempt leaves nothing open."""
    try:
        await client.connect(url, auth=auth, transports=["websocket"], wait_timeout=CONNECT_TIMEOUT)
    except CONNECT_FAILURES:
        with contextlib.suppress(*CONNECT_FAILURES):
            await client.disconnect()
        # A refused handshake leaves Engine.IO's aiohttp session open; close it here.
        http = getattr(client.eio, "http", None)
        if http is not None and not http.closed:
            await http.close()
        raise


def contiguous(seqs: Iterable[int]) -> int:
    """The highest n such that 1..n are all in ``seqs`` (0 when 1 is missing)."""
    held = set(seqs)
    n = 0
    while n + 1 in held:
        n += 1
    return n


class Reconnector:
    """Holds a client's current connection and rebuilds it after a drop."""

    def __init__(
        self,
        *,
        name: str,
        urls: list[str],
        open: Callable[[str], Awaitable[socketio.AsyncClient]],
    ) -> None:
        self._name = name
        self._urls = urls
        self._open = open
        self.client: socketio.AsyncClient | None = None
        self.reconnects = 0
        self.failed_connects = 0
        self._closing = False
        self._paused = False
        self._reconnecting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for attempt in range(START_ATTEMPTS):
            if await self._connect(self._urls[attempt % len(self._urls)]):
                return
            await asyncio.sleep(RECONNECT_DELAY)
        raise RuntimeError(f"{self._name} could not connect to {self._urls}")

    async def pause(self) -> None:
        """Drop the connection on purpose and stay away until :meth:`resume`."""
        self._paused = True
        await self._disconnect()

    async def resume(self) -> None:
        self._paused = False
        self._schedule()
        if self._reconnecting is not None:
            await self._reconnecting

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        await self._disconnect()

    async def _disconnect(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(*CONNECT_FAILURES):
                await client.disconnect()

    async def _connect(self, url: str) -> bool:
        try:
            client = await self._open(url)
        except CONNECT_FAILURES:
            self.failed_connects += 1
            return False
        self.client = client

        async def dropped(*_: Any) -> None:
            if self.client is client:
                self.client = None
                self._schedule()

        client.on("disconnect", dropped)
        if not client.connected:  # it dropped between connect and the handler
            await dropped()
        return True

    def _schedule(self) -> None:
        if self._closing or self._paused:
            return
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.create_task(
                self._reconnect(), name=f"{self._name} reconnect"
            )

    async def _reconnect(self) -> None:
        delay = RECONNECT_DELAY
        attempt = 0
        while not self._closing and not self._paused and self.client is None:
            if await self._connect(self._urls[attempt % len(self._urls)]):
                self.reconnects += 1
                return
            attempt += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

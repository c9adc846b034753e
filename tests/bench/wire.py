"""A lean Socket.IO client for load: Engine.IO 4 / Socket.IO 5 over one websocket.

The benchmark's clients must cost the machine as little as possible, since they
share its two cores with the servers they measure. python-socketio's client runs
every packet through several layers and a task; this one reads frames, answers
pings, resolves acks and hands events to a plain callback with their arrival
time. It speaks only what the widget and the dashboard need: connect with
``auth`` to the default namespace, emit with an ack, receive events.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

EventHandler = Callable[[str, Any, float], None]  # (event, payload, perf_counter at arrival)
# What a browser offers: permessage-deflate, with the largest window (2**15 bytes).
BROWSER_DEFLATE = 15
CONNECT_TIMEOUT = 30.0  # seconds for the websocket and the namespace handshake
ACK_TIMEOUT = 30.0  # seconds an emit waits for its ack


class Refused(Exception):
    """The server refused the namespace connect (``connect_error``)."""


class Disconnected(Exception):
    """The socket closed before the ack arrived."""


def _ignore(event: str, payload: Any, at: float) -> None:
    """The default handler: a client that only sends."""


class SocketClient:
    """One connected socket; build it with :meth:`connect`, end it with :meth:`close`."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, on_event: EventHandler, *, raw: bool = False
    ) -> None:
        self._ws = ws
        self._on_event = on_event
        # Raw: events reach the handler as the frame's text, unparsed ("" as the name).
        self._raw = raw
        self._ids = itertools.count()
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    @classmethod
    async def connect(
        cls,
        session: aiohttp.ClientSession,
        url: str,
        auth: dict[str, Any],
        on_event: EventHandler = _ignore,
        *,
        raw: bool = False,
        deflate: bool = False,
    ) -> SocketClient:
        """``deflate``: offer permessage-deflate in the handshake, as every browser does."""
        ws_url = url.replace("http://", "ws://", 1).rstrip("/")
        async with asyncio.timeout(CONNECT_TIMEOUT):
            ws = await session.ws_connect(
                f"{ws_url}/socket.io/?EIO=4&transport=websocket",
                autoping=True,
                max_msg_size=0,
                compress=BROWSER_DEFLATE if deflate else 0,
            )
            opening = await ws.receive_str()
            if not opening.startswith("0"):
                await ws.close()
                raise Refused(f"unexpected Engine.IO opening {opening[:80]!r}")
            await ws.send_str("40" + json.dumps(auth))
            while True:
                reply = await ws.receive_str()
                if reply == "2":
                    await ws.send_str("3")
                    continue
                break
        if reply.startswith("44"):
            await ws.close()
            raise Refused(reply[2:])
        if not reply.startswith("40"):
            await ws.close()
            raise Refused(f"unexpected connect reply {reply[:80]!r}")
        client = cls(ws, on_event, raw=raw)
        client._reader = asyncio.create_task(client._read(), name="bench-socket-reader")
        return client

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                data: str = frame.data
                at = time.perf_counter()
                if data == "2":
                    await self._ws.send_str("3")
                elif data.startswith("42") and self._raw:
                    self._on_event("", data, at)
                elif data.startswith("42"):
                    name, *args = json.loads(data[2:])
                    self._on_event(name, args[0] if args else None, at)
                elif data.startswith("43"):
                    bracket = data.index("[")
                    future = self._acks.pop(int(data[2:bracket]), None)
                    if future is not None and not future.done():
                        args = json.loads(data[bracket:])
                        future.set_result(args[0] if args else None)
                elif data.startswith("41") or data.startswith("1"):
                    break
        finally:
            self.closed.set()
            for future in self._acks.values():
                if not future.done():
                    future.set_exception(Disconnected("the socket closed"))
            self._acks.clear()

    async def emit(self, event: str, data: Any) -> asyncio.Future[Any]:
        """Send ``event`` asking for an ack; return the future that resolves to it."""
        if self.closed.is_set():
            raise Disconnected("the socket is closed")
        ack_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = future
        await self._ws.send_str(f"42{ack_id}" + json.dumps([event, data]))
        return future

    async def call(self, event: str, data: Any, timeout: float = ACK_TIMEOUT) -> Any:
        future = await self.emit(event, data)
        async with asyncio.timeout(timeout):
            return await future

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.send_str("41")
        with contextlib.suppress(Exception):
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

"""An Engine.IO socket whose open websocket holds one task (uvicorn's), not five.

python-engineio's ``AsyncSocket`` keeps, per websocket: a writer task waiting on
the send queue through ``asyncio.wait_for`` (on Python 3.11 a second task), a
task per incoming frame, again inside ``wait_for``, and a task sleeping until
the next ping. With their coroutines, futures and timers that is about 7 KB per
idle socket (tracemalloc). Here the socket's own ASGI task reads frames, the
next ping is an entry in the server's :class:`gateway.ping_clock.PingClock`,
and a writer task exists only while packets wait to be sent. A read has no
timeout of its own: a silent client is found by python-engineio's service
task, which checks every socket's unanswered ping once per ``ping_timeout``.

What is kept, as python-engineio has it: packets leave in the order they were
queued, from one writer at a time; a socket that leaves a ping unanswered for
``ping_timeout`` is closed (by the service task, within another
``ping_timeout``); a frame over ``max_http_buffer_size`` closes the socket;
``close(wait=True)`` returns once the queue is flushed. A socket that came over
long-polling and upgrades keeps python-engineio's handler (long-polling is off
unless configured).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from engineio import async_socket, exceptions, packet

WRITER_TASK = "engineio-writer"  # the name of each socket's short-lived writer task


class CompactSocket(async_socket.AsyncSocket):  # type: ignore[misc]
    """``engineio.async_socket.AsyncSocket``: pings on a shared clock, a writer on demand."""

    # python-engineio's attributes this class reads and writes (annotations only).
    last_ping: float | None
    connected: bool
    # Class-level defaults: python-engineio builds the socket, then it becomes this class.
    _websocket: Any = None  # set while this handler owns the websocket
    _writer: asyncio.Task[None] | None = None

    def schedule_ping(self) -> None:
        # As python-engineio: a new ping only once the previous one was answered.
        if self.last_ping:
            self.last_ping = None
            self.server.ping_clock.schedule(self)  # one timer for all (gateway.ping_clock)

    def _ping_due(self) -> None:
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self._enqueue(packet.Packet(packet.PING))

    async def send(self, pkt: packet.Packet) -> None:
        if not await self.check_ping_timeout():
            return
        self._enqueue(pkt)

    def queue_frame(self, pkt: packet.Packet) -> None:
        """Queue an encoded packet without the ping check: :class:`gateway.broadcast.Broadcast`
        checks it for a whole room at once, and must start the writer like any send."""
        self._enqueue(pkt)

    def _enqueue(self, pkt: packet.Packet | None) -> None:
        self.queue.put_nowait(pkt)
        if self._websocket is not None and self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write(), name=WRITER_TASK)

    async def _write(self) -> None:
        """Send what is queued, then end; ``None`` (the reader is done) closes the websocket."""
        ws = self._websocket
        try:
            while True:
                try:
                    pkt = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                self.queue.task_done()
                if pkt is None:
                    break
                try:
                    await ws.send(pkt.encode())
                except Exception:
                    break  # the websocket is gone: python-engineio's writer stops the same way
            self._websocket = None
            await ws.close()
        finally:
            self._writer = None

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        await super().close(wait=wait, abort=abort, reason=reason)
        if self.closed and self._websocket is not None:
            # Closed from outside the reader (the service task's ping check, a
            # server-side disconnect): the writer flushes the queue, then closes
            # the websocket, which ends the reader's wait.
            self._enqueue(None)

    async def _websocket_handler(self, ws: Any) -> None:
        if self.connected:
            await super()._websocket_handler(ws)  # an upgrade from long-polling
            return
        self.connected = True
        self.upgraded = True
        self._websocket = ws
        if not self.queue.empty():
            self._writer = asyncio.get_running_loop().create_task(self._write(), name=WRITER_TASK)
        while True:
            # Nothing of the previous frame stays referenced while the next is
            # awaited: its text, packet and decoded payload were ~700 B per idle socket.
            data = None
            # No timeout per read: python-engineio's service task already closes a
            # socket whose ping went unanswered for ping_timeout (it visits every
            # socket once per ping_timeout), and its close ends this wait. A timer
            # per wait cost ~1 KB per idle socket.
            try:
                data = await ws.wait()
            except BaseException:
                # A closed websocket or a cancelled task: python-engineio ends the
                # loop for each alike and closes the socket below.
                break
            if data is None or len(data) > self.server.max_http_buffer_size:
                break
            try:
                await self.receive(packet.Packet(encoded_packet=data))
            except exceptions.UnknownPacketError:
                pass
            except exceptions.SocketIsClosedError:
                break
            except Exception:
                self.server.logger.exception("Unknown receive error")
        self._enqueue(None)
        if self._writer is not None:
            await self._writer
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)

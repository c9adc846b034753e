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
The writer takes everything queued at once and, over uvicorn's
:class:`gateway.websocket_protocol.CompactWebSocketProtocol`, writes it with one
system call.

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
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from engineio import async_socket, exceptions, packet

WRITER_TASK = "engineio-writer"  # the name of each socket's short-lived writer task

FrameWriter = Callable[[Sequence[str | bytes]], bool]


def frame_writer(send: Any) -> FrameWriter | None:
    """The ASGI server's batch write behind a websocket's ASGI ``send``, if it has one.

    When no middleware wraps it, ``send`` is the uvicorn protocol's bound method.
    """
    write = getattr(getattr(send, "__self__", None), "write_frames", None)
    return write if callable(write) else None


class CompactSocket(async_socket.AsyncSocket):  # type: ignore[misc]
    """``engineio.async_socket.AsyncSocket``: pings on a shared clock, a writer on demand."""

    # python-engineio's attributes this class reads and writes (annotations only).
    last_ping: float | None
    connected: bool
    upgraded: bool
    # Class-level defaults: python-engineio builds the socket, then it becomes this class.
    _send: Any = None  # the websocket's ASGI send, while this socket's reader owns it
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
        if self._send is not None and self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write(), name=WRITER_TASK)

    async def _write(self) -> None:
        """Send what is queued, then end; ``None`` (the reader is done) closes the websocket."""
        send = self._send
        write_frames = frame_writer(send)
        try:
            closing = False
            while not closing:
                frames: list[str | bytes] = []
                while True:
                    try:
                        pkt = self.queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    self.queue.task_done()
                    if pkt is None:
                        closing = True
                        break
                    frames.append(pkt.encode())
                if not frames and not closing:
                    return
                try:
                    if frames and (write_frames is None or not write_frames(frames)):
                        for frame in frames:
                            await _send_frame(send, frame)
                except Exception:
                    break  # the websocket is gone: python-engineio's writer stops the same way
            self._send = None
            with contextlib.suppress(Exception):  # already closed: as python-engineio's close
                await send({"type": "websocket.close"})
        finally:
            self._writer = None

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        await super().close(wait=wait, abort=abort, reason=reason)
        if self.closed and self._send is not None:
            # Closed from outside the reader (the service task's ping check, a
            # server-side disconnect): the writer flushes the queue, then closes
            # the websocket, which ends the reader's wait.
            self._enqueue(None)

    async def handle_get_request(self, environ: dict[str, Any]) -> Any:
        """A new websocket is served here; long-polling and its upgrades by python-engineio.

        python-engineio serves a websocket four coroutines deep (this method, its
        ``_upgrade_websocket``, its ASGI ``WebSocket`` wrapper, its handler), each
        suspended for the socket's life, plus the wrapper and a coroutine per read:
        ~1.1 KB per idle socket. Here the reader is this coroutine, on ASGI's
        ``receive`` and ``send`` directly.
        """
        # python-engineio's test for an upgrade request, word for word.
        connections = [
            part.strip() for part in environ.get("HTTP_CONNECTION", "").lower().split(",")
        ]
        if (
            self.connected
            or self.upgraded
            or "upgrade" not in connections
            or environ.get("HTTP_UPGRADE", "").lower() != "websocket"
            or "asgi.send" not in environ
        ):
            return await super().handle_get_request(environ)
        receive, send = environ["asgi.receive"], environ["asgi.send"]
        await send({"type": "websocket.accept"})
        self.connected = True
        self.upgraded = True
        self._send = send
        if not self.queue.empty():
            self._writer = asyncio.get_running_loop().create_task(self._write(), name=WRITER_TASK)
        limit = self.server.max_http_buffer_size
        while True:
            # Nothing of the previous frame stays referenced while the next is
            # awaited: its event, text, packet and decoded payload were ~700 B per
            # idle socket. No timeout per read: python-engineio's service task
            # closes a socket whose ping went unanswered for ping_timeout, and the
            # close ends this wait (a timer per wait cost ~1 KB per idle socket).
            event = data = None
            try:
                event = await receive()
            except BaseException:
                # A cancelled task: python-engineio ends the loop as for a closed
                # websocket, and closes the socket below.
                break
            if event["type"] != "websocket.receive":
                break  # the websocket closed
            data = event.get("bytes")
            if data is None:
                data = event.get("text")
            if data is None or len(data) > limit:
                break
            event = None
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
        return ""  # as python-engineio's ASGI WebSocket: nothing more to answer


async def _send_frame(send: Any, frame: str | bytes) -> None:
    # As python-engineio's ASGI WebSocket.send: both keys, one of them None.
    if isinstance(frame, bytes):
        await send({"type": "websocket.send", "bytes": frame, "text": None})
    else:
        await send({"type": "websocket.send", "bytes": None, "text": frame})

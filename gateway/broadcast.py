"""Emitting one event to this gateway's sockets in a room: encoded once, queued directly.

python-socketio's ``AsyncServer.emit`` (with its in-memory manager) builds the
Socket.IO packet, scans it for binary, then starts **one asyncio task per
recipient** and waits for them all; each task hands the packet to Engine.IO,
which checks the socket and queues the frame for that socket's writer task. In
a profile of the fan-out stage that emit was 28 % of the gateway's CPU, and the
writers, woken once per event each, another 32 %.

:class:`Broadcast` keeps python-socketio's semantics (the same participants,
the same wire text, the same namespace rules) and does the per-recipient part
itself: the packet is encoded once, and put straight onto each recipient's
Engine.IO send queue without a task or a wait. Nothing in it suspends, so the
events the subscription reads in one wake-up reach each socket's queue together
and its writer sends them in one turn.

python-socketio has no public "queue this encoded packet for these sockets"
call, so this module is the one place that relies on internals, named in
:data:`ENGINEIO_INTERNALS`; ``tests/gateway/test_broadcast.py`` fails loudly if an
upgrade moves any of them. An emit the fast path cannot serve exactly (binary
data, a message-queue manager) goes through ``AsyncServer.emit`` unchanged.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from gateway.engine_socket import CompactSocket

logger = logging.getLogger("parley.broadcast")

DEFAULT_NAMESPACE = "/"

# What the fast path reads of python-engineio 4.x, beyond its public API:
# ``AsyncServer.sockets`` (eio_sid → AsyncSocket), and on each socket ``queue`` (the
# asyncio.Queue its writer task, or a long-poll GET, drains), ``closing``/``closed``
# and ``last_ping`` (set when a PING went out, cleared by the PONG). ``socket.send``
# itself does no more than check that ping and ``queue.put`` the packet.
ENGINEIO_INTERNALS = ("sockets", "queue", "closing", "closed", "last_ping")


def encode_event(event: str, data: Any, *, namespace: str, codec: Any) -> str:
    """The text of the Socket.IO EVENT packet python-socketio would send for this emit.

    ``codec`` is python-socketio's JSON module (``packet_class.json``). A tuple is
    several arguments, None none. Binary data raises TypeError: it needs attachments.
    """
    if isinstance(data, tuple):
        arguments = [event, *data]
    elif data is None:
        arguments = [event]
    else:
        arguments = [event, data]
    head = str(sio_packet.EVENT) + ("" if namespace == "/" else namespace + ",")
    return head + str(codec.dumps(arguments, separators=(",", ":")))


class Broadcast:
    """An :class:`gateway.fanout.Emitter` for ``server``'s sockets on this gateway.

    ``emit(event, data, to=room)`` reaches exactly the sockets python-socketio's
    ``server.emit(event, data, to=room)`` would: the room's participants in the
    namespace, every socket of the namespace when ``to`` is None. A socket that is
    closing or already gone is skipped, never an error (python-socketio would still
    queue to a closing one; its client is being disconnected and catches up when it
    connects again).
    """

    def __init__(self, *, server: socketio.AsyncServer, namespace: str = DEFAULT_NAMESPACE):
        self._server = server
        self._namespace = namespace
        # Only the in-memory manager emits to local sockets alone; a message-queue
        # manager (AsyncRedisManager...) must see every emit to pass it on.
        self._direct = type(server.manager) is socketio.AsyncManager

    async def emit(self, event: str, data: Any = None, *, to: str | None = None) -> None:
        if not self._direct:
            await self._server.emit(event, data, to=to, namespace=self._namespace)
            return
        sockets = self._recipients(to)
        if not sockets:
            return  # nobody here: most visitor rooms live on another gateway
        try:
            text = encode_event(
                event, data, namespace=self._namespace, codec=self._server.packet_class.json
            )
        except TypeError:
            # Binary (or otherwise not JSON) data: python-socketio's own path sends
            # attachments as separate frames.
            await self._server.emit(event, data, to=to, namespace=self._namespace)
            return
        frame = eio_packet.Packet(eio_packet.MESSAGE, text)
        frame.encode()  # cached on the packet: every writer reuses one string
        stale = []
        now = time.time()
        timeout = self._server.eio.ping_timeout
        for socket in sockets:
            if socket.last_ping and now - socket.last_ping > timeout:
                stale.append(socket)
            elif isinstance(socket, CompactSocket):
                # Its writer runs only while something is queued: queue through it.
                socket.queue_frame(frame)
            else:
                socket.queue.put_nowait(frame)
        for socket in stale:
            # Engine.IO closes a socket whose PONG is overdue instead of sending to it.
            try:
                await socket.send(frame)
            except Exception:
                logger.exception(
                    "could not close an unresponsive socket", extra={"action": "broadcast.stale"}
                )

    def _recipients(self, room: str | None) -> list[Any]:
        """The open Engine.IO sockets of the room's participants, now."""
        sockets = self._server.eio.sockets
        found = []
        # get_participants copies the room first, so a disconnect meanwhile is harmless.
        for _sid, eio_sid in self._server.manager.get_participants(self._namespace, room):
            socket = sockets.get(eio_sid)
            if socket is not None and not socket.closing and not socket.closed:
                found.append(socket)
        return found

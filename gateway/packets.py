"""The Socket.IO server class, with a bound on binary attachments and an answer to
events that cannot be decoded.

Engine.IO refuses a frame over ``max_http_buffer_size``, but a Socket.IO packet with
binary attachments arrives as one frame per attachment, and python-socketio keeps
them in memory until the count the packet's header announced has arrived: up to
9,999,999,999 of them. Without a bound, one socket could fill the gateway's memory
one frame under the limit at a time. Our clients never send binary, so a packet may
carry a few attachments, and all of them together stay under the packet limit;
past either, the socket is closed, as Engine.IO does for an oversized frame.

python-socketio drops a packet whose JSON it cannot decode (malformed, or nested
deeper than the decoder's recursion limit) and logs a traceback, so the client
waits for an ack forever. An event with an ack id gets ``invalid_payload`` instead.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import socketio
from prometheus_client import Counter
from socketio import packet

from gateway.engine import EngineServer
from gateway.errors import InvalidPayload

logger = logging.getLogger("parley.packets")

MAX_ATTACHMENTS = 10  # binary attachments in one Socket.IO packet
BINARY_TYPES = ("5", "6")  # BINARY_EVENT, BINARY_ACK: the first character of the header

# An EVENT packet's head: type 2, an optional namespace, the ack id (Socket.IO v5).
EVENT_HEAD = re.compile(r"2(/[^,]{0,200},)?(\d{1,10})")

CLOSED = Counter(
    "parley_gateway_oversized_packets_total",
    "Sockets closed for binary attachments past the packet limit",
)


class BoundedServer(socketio.AsyncServer):  # type: ignore[misc]
    """``socketio.AsyncServer`` that bounds what one packet's attachments may add up to."""

    def __init__(self, *, max_http_buffer_size: int, **options: Any) -> None:
        super().__init__(max_http_buffer_size=max_http_buffer_size, **options)
        self._max_packet = max_http_buffer_size
        self._attachment_bytes: dict[str, int] = {}

    def _engineio_server_class(self) -> type[EngineServer]:
        # python-socketio's hook for the Engine.IO server it builds: ours keeps less per socket.
        return EngineServer

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        # python-socketio has no public hook between Engine.IO frames and packet
        # reassembly; tests/gateway/test_transports.py fails if this one moves.
        if eio_sid in self._binary_packet:
            received = self._attachment_bytes.get(eio_sid, 0) + len(data)
            if received > self._max_packet:
                await self._refuse(eio_sid, f"attachments over {self._max_packet} bytes")
                return
            self._attachment_bytes[eio_sid] = received
        elif isinstance(data, str) and data[:1] in BINARY_TYPES:
            self._attachment_bytes[eio_sid] = len(data)
        elif isinstance(data, str):
            pkt = self._decoded(data)
            if pkt is None:
                await self._answer_undecodable(eio_sid, data)
                return
            if pkt.packet_type == packet.EVENT:
                # Every message is an EVENT: dispatched as python-socketio does, from
                # the packet decoded above rather than from a second decode.
                self._attachment_bytes.pop(eio_sid, None)
                await self._handle_event(eio_sid, pkt.namespace, pkt.id, pkt.data)
                return
        await super()._handle_eio_message(eio_sid, data)
        pending = self._binary_packet.get(eio_sid)
        if pending is None:
            self._attachment_bytes.pop(eio_sid, None)
        elif pending.attachment_count > MAX_ATTACHMENTS:
            await self._refuse(eio_sid, f"more than {MAX_ATTACHMENTS} attachments")

    def _decoded(self, data: str) -> Any:
        """The packet, or None when its JSON cannot be decoded."""
        try:
            return self.packet_class(encoded_packet=data)
        except (ValueError, RecursionError):
            return None

    async def _answer_undecodable(self, eio_sid: str, data: str) -> None:
        head = EVENT_HEAD.match(data)
        logger.info("dropped an undecodable packet", extra={"action": "socket.undecodable"})
        if head is None:
            return  # no ack id: nobody is waiting for an answer
        namespace = (head.group(1) or "/,")[:-1]
        error = InvalidPayload("the event is not valid JSON, or is nested too deeply")
        await self._send_packet(
            eio_sid,
            self.packet_class(
                packet.ACK, namespace=namespace, id=int(head.group(2)), data=[error.as_ack()]
            ),
        )

    async def _refuse(self, eio_sid: str, why: str) -> None:
        self._binary_packet.pop(eio_sid, None)
        self._attachment_bytes.pop(eio_sid, None)
        CLOSED.inc()
        logger.info("closed a socket: %s", why, extra={"action": "socket.oversized"})
        await self.eio.disconnect(eio_sid)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        self._attachment_bytes.pop(eio_sid, None)
        await super()._handle_eio_disconnect(eio_sid, reason)

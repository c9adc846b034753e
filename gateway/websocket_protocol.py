"""uvicorn's websocket for the gateway: its options, and a protocol that keeps less per socket.

The options (:func:`websocket_options`), passed by ``parley gateway`` and by the
tests' in-process gateway alike:

- **permessage-deflate off.** Every browser offers it, and with it each socket
  keeps a zlib compressor and decompressor: 42 KB of the 87 KB a browser's socket
  cost (``make bench-stages STAGES="--only sockets"``). Engine.IO frames here
  are small JSON (events, acks, pings); the largest, a visitor's history, is
  sent once per identify. Bytes on the wire are cheaper than 200 MB per 5,000
  sockets, and the CPU of compressing every fan-out emit.
- **No websocket-level pings.** Engine.IO already pings every socket (every
  25 s; no answer within 20 s closes it), so uvicorn's own keepalive (a timer
  per socket, every 20 s) detected nothing more.
- **Frames up to ``4 * MAX_PAYLOAD`` bytes.** Engine.IO refuses packets over
  ``MAX_PAYLOAD`` characters (at most 4 UTF-8 bytes each); uvicorn's default
  (16 MiB) let a socket make the gateway buffer 16 MiB before Engine.IO looked.

:class:`CompactWebSocketProtocol` is uvicorn's ``websockets-sansio`` protocol
with :mod:`gateway.primitives`' queue and event, and without the handshake's
request and response once the socket is open (about 6 KB per socket), its
attributes in slots rather than an instance dict (1.3 KB less per socket). Its
:meth:`~CompactWebSocketProtocol.write_frames` frames several messages and writes
them with one ``transport.write``: a dashboard under load has many events queued
at each wake-up, and a write (a system call) per frame was a tenth of the
gateway's CPU at the benchmark's maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from gateway.primitives import CompactEvent, CompactQueue
from gateway.sockets import MAX_PAYLOAD

UTF8_MAX_BYTES = 4  # bytes one character may take in UTF-8
MAX_FRAME = UTF8_MAX_BYTES * MAX_PAYLOAD  # bytes; the largest packet Engine.IO accepts


# Every attribute uvicorn's protocol sets on a connection (its __init__ and handshake;
# tests/gateway/test_websocket_protocol.py fails if uvicorn adds one). 37 keys made each
# socket's instance dict 1.6 KB; as slots they are 8 bytes each in the object.
UVICORN_ATTRIBUTES = (
    "config", "app", "loop", "logger", "root_path", "asgi_version", "app_state",
    "connections", "tasks", "default_headers", "transport", "server", "client", "scheme",
    "queue", "handshake_initiated", "handshake_complete", "close_sent", "disconnected",
    "close_timer", "close_timeout", "initial_response", "conn", "read_paused", "writable",
    "ping_interval", "ping_timeout", "ping_timer", "pong_timer", "pending_ping_payload",
    "ping_sent_at", "last_ping_rtt", "frames", "curr_msg_data_type", "request", "response",
    "scope",
)  # fmt: skip


class CompactWebSocketProtocol(WebSocketsSansIOProtocol):  # type: ignore[misc]
    """uvicorn's ``websockets-sansio`` protocol, lighter per connection."""

    # Slot descriptors on this class take the attributes uvicorn's code sets on self,
    # so no instance dict is made (uvicorn's class keeps its __dict__ for anything new).
    __slots__ = UVICORN_ATTRIBUTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn uses put_nowait, get and empty of the one, set, clear and wait of the other.
        self.queue = CompactQueue()  # type: ignore[assignment]
        self.writable = CompactEvent()  # type: ignore[assignment]
        self.writable.set()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The ASGI scope now has the headers. websockets' parser keeps the request
        # (a local of its generator) for the socket's life; its headers, a second
        # copy of every header, are read by nobody after the handshake.
        self.request = None  # type: ignore[assignment]
        event.headers.clear()

    def write_frames(self, messages: Sequence[str | bytes]) -> bool:
        """Frame ``messages`` in order and write them at once; False if the socket cannot
        take them now (not open, closing, or its transport is paused), and then the
        caller sends them one by one through ASGI, which waits or raises as uvicorn does."""
        if (
            self.disconnected
            or self.close_sent
            or not self.handshake_complete
            or self.initial_response is not None
            or not self.writable.is_set()
        ):
            return False
        for message in messages:
            if isinstance(message, str):
                self.conn.send_text(message.encode())
            else:
                self.conn.send_binary(message)
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            self.response = None  # type: ignore[assignment]  # written; uvicorn reads it only before the accept


def websocket_options() -> dict[str, Any]:
    """The websocket keyword arguments of ``uvicorn.run`` / ``uvicorn.Config``."""
    return {
        "ws": CompactWebSocketProtocol,
        "ws_per_message_deflate": False,
        "ws_ping_interval": None,
        "ws_ping_timeout": None,
        "ws_max_size": MAX_FRAME,
    }

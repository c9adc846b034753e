"""The Engine.IO server under the Socket.IO server, with lighter per-socket state.

python-engineio's defaults cost every connected socket, besides its websocket,
about 20 KB (measured with tracemalloc in a gateway holding visitor sockets):

- its send queue, an ``asyncio.Queue`` (3.2 KB): here a :class:`CompactQueue`;
- the ASGI request's environ, built by a ``translate_request`` that defines a new
  class per request for ``wsgi.input`` (2.5 KB each, kept as long as the socket):
  here the same environ with one module-level :class:`RequestBody`;
- the websocket's ASGI scope, which uvicorn keeps for the socket's life, with
  a raw copy of every header (about 1.9 KB with its handshake-only entries):
  released once the environ holds the headers (:func:`release_handshake`);
- four tasks (writer, ping, a reader task per frame, a task inside each
  ``wait_for``): here :class:`gateway.engine_socket.CompactSocket`, one task.

python-engineio creates each socket itself; the ``connect`` event is the first
moment the socket is reachable, before anything of it has run.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import engineio
from engineio import async_socket

from gateway.engine_socket import CompactSocket
from gateway.ping_clock import PingClock
from gateway.primitives import CompactQueue

# Scope entries only the handshake reads: the requested subprotocols, the
# server's extensions and the lifespan state copied for the request.
HANDSHAKE_ONLY = ("subprotocols", "extensions", "state")

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RequestBody:
    """``environ["wsgi.input"]``: reads a long-polling POST's body from the ASGI events."""

    __slots__ = ("_event", "_payload", "_receive")

    def __init__(self, event: MutableMapping[str, Any], receive: Receive) -> None:
        # A websocket's body is never read, and its environ lives as long as the
        # socket: keeping its connect event would only hold one more dict.
        self._event = event if event["type"] == "http.request" else None
        self._receive = receive
        self._payload: bytes | None = None

    async def read(self, length: int | None = None) -> bytes:
        if self._payload is None and self._event is not None:
            self._payload = self._event.get("body") or b""
            while self._event.get("more_body"):
                self._event = await self._receive()
                if self._event["type"] == "http.request" and (
                    length is None or len(self._payload) < length
                ):
                    self._payload += self._event.get("body") or b""
        payload = self._payload or b""
        if length is None:
            self._payload = b""
            return payload
        self._payload = payload[length:]
        return payload[:length]


async def translate_request(
    scope: MutableMapping[str, Any], receive: Receive, send: Send
) -> dict[str, Any]:
    """The environ python-engineio's ASGI driver builds, key for key (tests compare them)."""
    event = await receive()
    if event["type"] not in ("http.request", "websocket.connect"):
        return {}
    raw_uri = scope["path"]
    query_string = ""
    if scope.get("query_string"):
        try:
            query_string = scope["query_string"].decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raw_uri += "?" + query_string
    environ: dict[str, Any] = {
        "wsgi.input": RequestBody(event, receive),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.async": True,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "SERVER_SOFTWARE": "asgi",
        "REQUEST_METHOD": scope.get("method", "GET"),
        "PATH_INFO": scope["path"],
        "QUERY_STRING": query_string,
        "RAW_URI": raw_uri,
        "SCRIPT_NAME": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "0",
        "SERVER_NAME": "asgi",
        "SERVER_PORT": "0",
        "asgi.receive": receive,
        "asgi.send": send,
        "asgi.scope": scope,
    }
    for raw_name, raw_value in scope["headers"]:
        try:
            name = raw_name.upper().decode("utf-8")
            value = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            continue  # as python-engineio: a header that cannot be decoded is skipped
        if name in ("CONTENT-TYPE", "CONTENT-LENGTH"):
            environ[name.replace("-", "_")] = value
            continue
        # Interned: every socket's environ shares one string per header name.
        key = sys.intern("HTTP_" + name.replace("-", "_"))
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    environ["wsgi.url_scheme"] = environ.get("HTTP_X_FORWARDED_PROTO", "http")
    if scope["type"] == "websocket":
        release_handshake(scope)
    return environ


def release_handshake(scope: MutableMapping[str, Any]) -> None:
    """Drop what a websocket's scope holds only for its handshake; the environ has the headers.

    uvicorn keeps the scope as long as the socket. After this point nobody reads
    its headers: uvicorn's proxy-headers middleware ran before the app, and
    Engine.IO and Socket.IO (Parley's connect handlers too) read the environ,
    where every header is, decoded. What stays: type, path, query string, client
    and server (``gateway.limits`` reads the client), scheme.
    """
    scope["headers"] = ()
    for key in HANDSHAKE_ONLY:
        scope.pop(key, None)


class EngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """``engineio.AsyncServer`` whose sockets are :class:`CompactSocket`."""

    _async: dict[str, Any]  # python-engineio's async driver table (an annotation only)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Every CompactSocket's next ping, on one timer.
        self.ping_clock = PingClock(interval=self.ping_interval)
        # The async driver's table is python-engineio's documented seam between
        # the server and its web framework; only the environ builder differs.
        self._async = {**self._async, "translate_request": translate_request}

    def create_queue(self, *args: Any, **kwargs: Any) -> CompactQueue[Any]:
        if args or kwargs:
            raise TypeError("the gateway's Engine.IO queues are unbounded")
        return CompactQueue()

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "connect":
            socket = self.sockets.get(args[0])
            # CompactSocket only overrides methods, so the instance needs no conversion.
            if type(socket) is async_socket.AsyncSocket:
                socket.__class__ = CompactSocket
        return await super()._trigger_event(event, *args, **kwargs)

"""The gateway's outermost ASGI app: Socket.IO's path to Engine.IO, the rest to Starlette.

It routes as ``engineio.ASGIApp(server, other_asgi_app=..., engineio_path=...)``
does, with one difference: it is not a coroutine. It returns the chosen app's
awaitable, so uvicorn awaits Engine.IO's ``handle_request`` directly. An
``async def`` router stays suspended in every open socket's chain of coroutines
for the socket's whole life: about 500 bytes per socket (tracemalloc, 4,000
visitor sockets), for a decision made once at the handshake.

Not being a coroutine function, it does not look like an ASGI 3 app to
uvicorn's guess: whoever serves it passes ``interface=INTERFACE``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

INTERFACE: Final = "asgi3"  # uvicorn's interface option for this app (its guess would say ASGI 2)

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


class EngineRouter:
    """``engineio.ASGIApp`` for a server with an app behind it, without a frame per request."""

    # engineio.ASGIApp's attribute names, read by tests and tools alike.
    __slots__ = ("engineio_path", "engineio_server", "other_asgi_app")

    def __init__(self, *, engine: Any, other: App, path: str) -> None:
        self.engineio_server = engine  # an engineio.AsyncServer (handle_request)
        self.other_asgi_app = other
        # As engineio.ASGIApp: "/socket.io/" matches "/socket.io" and "/socket.io/...".
        self.engineio_path = "/" + path.strip("/") + "/"

    def __call__(self, scope: Scope, receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            if not path.endswith("/"):
                path += "/"
            if path.startswith(self.engineio_path):
                return self.engineio_server.handle_request(scope, receive, send)  # type: ignore[no-any-return]
        # Lifespan and every other path: engineio.ASGIApp hands these over too.
        return self.other_asgi_app(scope, receive, send)

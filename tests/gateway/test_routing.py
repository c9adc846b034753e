"""EngineRouter: engineio.ASGIApp's routing, without a coroutine frame per open socket."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import engineio
import pytest

from gateway.routing import EngineRouter
from persistence.directory import Project
from tests.gateway.test_websocket_protocol import _open


class Recorder:
    """Stands in for either app: records which one a scope reached."""

    def __init__(self, name: str, seen: list[str]) -> None:
        self.name = name
        self.seen = seen

    async def handle_request(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen.append(self.name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen.append(self.name)


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("websocket", "/socket.io/"),
        ("http", "/socket.io"),
        ("http", "/socket.io/x"),
        ("http", "/socket.iox"),
        ("http", "/"),
        ("websocket", "/other"),
        ("lifespan", ""),
    ],
)
async def test_it_routes_as_engineio_asgiapp(kind: str, path: str) -> None:
    ours: list[str] = []
    theirs: list[str] = []
    router = EngineRouter(
        engine=Recorder("engine", ours), other=Recorder("other", ours), path="socket.io"
    )
    reference = engineio.ASGIApp(
        Recorder("engine", theirs),
        other_asgi_app=Recorder("other", theirs),
        engineio_path="socket.io",
    )
    scope = {"type": kind, "path": path}
    await router(scope, None, None)
    await reference(scope, None, None)
    assert ours == theirs


async def test_an_open_socket_awaits_engineio_without_a_router_frame(
    gateway_url: str, project: Project
) -> None:
    """uvicorn's task awaits Engine.IO's handle_request; nothing routes in between."""
    before = asyncio.all_tasks()
    async with aiohttp.ClientSession() as session:
        ws = await _open(session, gateway_url, project)
        [task] = [
            t
            for t in asyncio.all_tasks() - before
            if t.get_coro().__qualname__.endswith("run_asgi")
        ]
        chain = []
        coroutine: Any = task.get_coro()
        while coroutine is not None and hasattr(coroutine, "cr_code"):
            chain.append(coroutine.cr_code.co_qualname)
            coroutine = coroutine.cr_await
        await ws.close()
    assert chain[:3] == [
        "WebSocketsSansIOProtocol.run_asgi",
        "ProxyHeadersMiddleware.__call__",
        "AsyncServer.handle_request",
    ]

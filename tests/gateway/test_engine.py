"""The gateway's Engine.IO server: python-engineio's behaviour with lighter per-socket state.

Most tests run an :class:`EngineServer` alone under uvicorn (as the gateway runs
it), with short ping intervals, and speak Engine.IO over a raw websocket.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import engineio
import pytest
import uvicorn
from engineio.async_drivers import asgi as engineio_asgi

from gateway.engine import EngineServer, translate_request
from gateway.engine_socket import WRITER_TASK, CompactSocket
from gateway.websocket_protocol import CompactWebSocketProtocol, websocket_options
from parley.embedded import free_port

WAIT = 10.0  # seconds before a test gives up on what should happen much sooner
PING_INTERVAL = 0.3  # seconds
PING_TIMEOUT = 0.5  # seconds


@contextlib.asynccontextmanager
async def engine_server(
    handlers: dict[str, Callable[..., Any]] | None = None,
    *,
    ws_protocol: type[CompactWebSocketProtocol] | None = None,
    **options: Any,
) -> AsyncIterator[tuple[str, EngineServer]]:
    """An EngineServer under uvicorn in this event loop; yields its URL and the server."""
    server = EngineServer(
        async_mode="asgi",
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        cors_allowed_origins="*",
        **options,
    )
    for event, handler in (handlers or {}).items():
        server.on(event, handler)
    port = free_port()
    ws_options = websocket_options()
    if ws_protocol is not None:
        ws_options["ws"] = ws_protocol
    config = uvicorn.Config(
        engineio.ASGIApp(server),
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="off",
        **ws_options,
    )
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve(), name="test-engine-server")
    while not running.started:
        assert not task.done(), "uvicorn exited during startup"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        running.should_exit = True
        await asyncio.wait_for(task, 15)


async def open_socket(
    session: aiohttp.ClientSession, url: str
) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    """A websocket-only Engine.IO connection; returns it and its sid."""
    ws = await session.ws_connect(
        url.replace("http://", "ws://") + "/engine.io/?EIO=4&transport=websocket"
    )
    opening = await asyncio.wait_for(ws.receive_str(), WAIT)
    assert opening.startswith("0"), opening
    return ws, json.loads(opening[1:])["sid"]


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"{what} did not happen"
        await asyncio.sleep(0.02)


def _scope(kind: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": kind,
        "method": "POST" if kind == "http" else "GET",
        "path": "/socket.io/",
        "query_string": b"EIO=4&transport=websocket&projectId=7",
        "headers": headers,
        "client": ("203.0.113.9", 5555),
    }


HEADERS = [
    (b"host", b"chat.example"),
    (b"origin", b"https://shop.example"),
    (b"x-forwarded-for", b"198.51.100.1"),
    (b"x-forwarded-for", b"10.0.0.2"),  # repeated: joined with a comma
    (b"content-type", b"text/plain"),
    (b"content-length", b"11"),
    (b"x-forwarded-proto", b"https"),
    (b"x-broken", b"\xff\xfe"),  # not UTF-8: skipped
]


@pytest.mark.parametrize("kind", ["websocket", "http"])
async def test_the_environ_is_python_engineios(kind: str) -> None:
    """Every key and value python-engineio's ASGI driver sets, and the same request body."""
    first = (
        {"type": "websocket.connect"}
        if kind == "websocket"
        else {"type": "http.request", "body": b"hello", "more_body": True}
    )
    rest = [{"type": "http.request", "body": b" world", "more_body": False}]

    def receiver() -> Callable[[], Any]:
        events = iter([dict(first), *map(dict, rest)])

        async def receive() -> Any:
            return next(events)

        return receive

    async def send(message: Any) -> None:
        raise AssertionError("translating a request sends nothing")

    scope = _scope(kind, HEADERS)
    # python-engineio's first: ours releases a websocket scope's headers once read.
    theirs = await engineio_asgi.translate_request(scope, receiver(), send)
    ours = await translate_request(scope, receiver(), send)
    our_body, their_body = ours.pop("wsgi.input"), theirs.pop("wsgi.input")
    for environ in (ours, theirs):  # each was given its own receive
        assert environ.pop("asgi.receive") is not None
    assert ours == theirs
    assert ours["HTTP_X_FORWARDED_FOR"] == "198.51.100.1,10.0.0.2"
    assert ours["asgi.scope"]["client"] == ("203.0.113.9", 5555)
    if kind == "http":  # python-engineio reads CONTENT_LENGTH bytes
        assert await our_body.read(11) == await their_body.read(11) == b"hello world"
        assert await our_body.read() == await their_body.read() == b""


async def test_a_websocket_scope_lets_go_of_its_handshake_once_the_environ_is_built() -> None:
    """uvicorn keeps a websocket's scope for its life; its raw headers were a second copy."""

    async def receive() -> Any:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent")

    scope = {
        **_scope("websocket", HEADERS),
        "subprotocols": ["chat"],
        "extensions": {"websocket.http.response": {}},
        "state": {"services": object()},
    }
    environ = await translate_request(scope, receive, send)
    assert environ["HTTP_ORIGIN"] == "https://shop.example"
    assert await environ["wsgi.input"].read() == b""
    # The body reader keeps no connect event (a dict per socket for nothing).
    assert not any(
        isinstance(event, dict) and event.get("type") == "websocket.connect"
        for event in gc.get_referents(environ["wsgi.input"])
    )
    assert environ["asgi.scope"] is scope
    assert scope == {
        "type": "websocket",
        "method": "GET",
        "path": "/socket.io/",
        "query_string": b"EIO=4&transport=websocket&projectId=7",
        "headers": (),
        "client": ("203.0.113.9", 5555),
    }
    # A long-polling request's scope lives only as long as the request: left whole.
    http = _scope("http", HEADERS)
    await translate_request(http, receive, send)
    assert http["headers"] == HEADERS


async def test_a_connected_socket_keeps_its_headers_in_the_environ_only() -> None:
    """Through uvicorn: the connect handler sees every header; the scope then holds none."""
    environs: list[dict[str, Any]] = []

    async def connect(sid: str, environ: dict[str, Any]) -> None:
        environs.append(environ)

    async with (
        engine_server({"connect": connect}) as (url, _server),
        aiohttp.ClientSession() as session,
    ):
        ws, _ = await open_socket(session, url)
        await until(lambda: bool(environs), "the connect handler running")
        [environ] = environs
        assert environ["HTTP_UPGRADE"].lower() == "websocket"
        assert environ["QUERY_STRING"] == "EIO=4&transport=websocket"
        scope = environ["asgi.scope"]
        assert scope["headers"] == ()
        assert not set(scope) & {"subprotocols", "extensions", "state"}
        assert scope["client"][0] == "127.0.0.1"
        await ws.send_str("4still served")
        await ws.close()


async def test_a_request_that_is_neither_gets_an_empty_environ() -> None:
    async def receive() -> Any:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent")

    assert await translate_request(_scope("http", []), receive, send) == {}


async def test_sockets_are_compact_and_hold_one_task_each() -> None:
    """python-engineio's own socket holds five tasks per websocket; this one holds one."""
    sockets = 20
    before = asyncio.all_tasks()
    async with engine_server() as (url, server), aiohttp.ClientSession() as session:
        opened = [await open_socket(session, url) for _ in range(sockets)]
        await until(lambda: len(server.sockets) == sockets, "every socket connecting")
        assert all(type(s) is CompactSocket for s in server.sockets.values())

        def writing() -> bool:
            return any(t.get_name() == WRITER_TASK for t in asyncio.all_tasks())

        await until(lambda: not writing(), "the opening packets leaving")
        # The uvicorn server's own task, then one per socket.
        running = collections.Counter(
            t.get_coro().__qualname__ for t in asyncio.all_tasks() - before
        )
        assert running == {
            "WebSocketsSansIOProtocol.run_asgi": sockets,  # uvicorn's, one per websocket
            "Server.serve": 1,  # uvicorn's
            "AsyncServer._service_task": 1,  # python-engineio's, one per server
            "Event.wait": 1,  # the service task's wait_for
        }
        for ws, _ in opened:
            await ws.close()


async def test_pings_go_on_while_answered_and_a_silent_socket_is_closed() -> None:
    disconnected: list[str] = []

    async def disconnect(sid: str, reason: Any) -> None:
        disconnected.append(sid)

    async with (
        engine_server({"disconnect": disconnect}) as (url, server),
        aiohttp.ClientSession() as session,
    ):
        ws, sid = await open_socket(session, url)
        for _ in range(3):  # three ping rounds, each answered
            assert await asyncio.wait_for(ws.receive_str(), WAIT) == "2"
            await ws.send_str("3")
        assert sid in server.sockets and not disconnected
        # Now silent: the next ping goes unanswered and the socket is closed.
        assert await asyncio.wait_for(ws.receive_str(), WAIT) == "2"
        message = await asyncio.wait_for(ws.receive(), WAIT)
        while message.type == aiohttp.WSMsgType.TEXT:  # the CLOSE packet, then the close
            message = await asyncio.wait_for(ws.receive(), WAIT)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await until(lambda: disconnected == [sid], "the disconnect handler running")
        await until(lambda: sid not in server.sockets, "the socket being forgotten")


async def test_packets_leave_in_order_and_disconnect_flushes_them() -> None:
    burst = 300
    eio: list[EngineServer] = []

    async def message(sid: str, data: Any) -> None:
        for index in range(burst):
            await eio[0].send(sid, str(index))
        await eio[0].disconnect(sid)  # waits until the queue is flushed

    async with (
        engine_server({"message": message}) as (url, server),
        aiohttp.ClientSession() as session,
    ):
        eio.append(server)
        ws, sid = await open_socket(session, url)
        await ws.send_str("4go")
        received: list[str] = []
        while True:
            frame = await asyncio.wait_for(ws.receive(), WAIT)
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            if frame.data != "2":  # a ping may slip in anywhere
                received.append(frame.data)
        assert received == [f"4{index}" for index in range(burst)] + ["1"]
        await until(lambda: sid not in server.sockets, "the socket being forgotten")


class CountingProtocol(CompactWebSocketProtocol):
    """Records the size of each batch written (the test's view of the writes)."""

    batches: list[int] = []

    def write_frames(self, messages: Any) -> bool:
        written = super().write_frames(messages)
        if written:
            CountingProtocol.batches.append(len(messages))
        return written


async def test_queued_packets_leave_in_one_write_and_in_order() -> None:
    burst = 300
    eio: list[EngineServer] = []
    CountingProtocol.batches = []

    async def message(sid: str, data: Any) -> None:
        socket = eio[0].sockets[sid]
        for index in range(burst):  # as a broadcast does: queued with no await between
            socket.queue_frame(engineio.packet.Packet(engineio.packet.MESSAGE, str(index)))

    async with (
        engine_server({"message": message}, ws_protocol=CountingProtocol) as (url, server),
        aiohttp.ClientSession() as session,
    ):
        eio.append(server)
        ws, _ = await open_socket(session, url)
        await ws.send_str("4go")
        received: list[str] = []
        while len(received) < burst:
            frame = await asyncio.wait_for(ws.receive_str(), WAIT)
            if frame != "2":
                received.append(frame)
        assert received == [f"4{index}" for index in range(burst)]
        assert burst in CountingProtocol.batches  # all of them in one write
        await ws.close()


async def test_a_frame_over_the_packet_limit_closes_the_socket() -> None:
    async with (
        engine_server(max_http_buffer_size=1_000) as (url, server),
        aiohttp.ClientSession() as session,
    ):
        ws, sid = await open_socket(session, url)
        await ws.send_str("4" + "x" * 999)  # at the limit: served
        await ws.send_str("4" + "x" * 1_000)  # over it: closed
        frame = await asyncio.wait_for(ws.receive(), WAIT)
        while frame.type == aiohttp.WSMsgType.TEXT:
            frame = await asyncio.wait_for(ws.receive(), WAIT)
        assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await until(lambda: sid not in server.sockets, "the socket being forgotten")


async def test_long_polling_still_upgrades_to_websocket() -> None:
    """A socket that starts on long-polling keeps python-engineio's upgrade and handler."""
    echoed: list[Any] = []

    async def message(sid: str, data: Any) -> None:
        await server.send(sid, f"echo {data}")

    serving = engine_server({"message": message}, transports=["polling", "websocket"])
    async with serving as (url, server):
        client = engineio.AsyncClient()
        client.on("message", echoed.append)
        await client.connect(url, transports=["polling", "websocket"])
        try:
            await until(lambda: client.transport() == "websocket", "the upgrade")
            await client.send("hi")
            await until(lambda: echoed == ["echo hi"], "the echo")
        finally:
            await client.disconnect()
        await until(lambda: not server.sockets, "the socket being forgotten")


async def test_a_waiting_reader_holds_nothing_of_the_last_frame() -> None:
    """The reader sits right under Engine.IO's connect and keeps nothing of the last frame."""
    handled: list[str] = []

    async def message(sid: str, data: Any) -> None:
        handled.append(data)

    before = asyncio.all_tasks()
    async with (
        engine_server({"message": message}) as (url, _server),
        aiohttp.ClientSession() as session,
    ):
        ws, _ = await open_socket(session, url)
        await ws.send_str("4" + "x" * 10_000)
        await until(lambda: bool(handled), "the message handled")
        [task] = [
            t
            for t in asyncio.all_tasks() - before
            if t.get_coro().__qualname__.endswith("run_asgi")
        ]
        chain = []
        coroutine: Any = task.get_coro()
        while coroutine.cr_code.co_name != "handle_get_request":
            chain.append(coroutine.cr_code.co_qualname)
            coroutine = coroutine.cr_await
        # The reader is the coroutine Engine.IO's connect awaits: no upgrade step,
        # no websocket wrapper, no handler coroutines between (one frame each).
        assert chain[-2:] == ["AsyncServer.handle_request", "AsyncServer._handle_connect"]
        assert coroutine.cr_code.co_qualname == "CompactSocket.handle_get_request"
        await until(lambda: coroutine.cr_await is not None, "the reader waiting again")
        held = coroutine.cr_frame.f_locals
        assert held.get("data") is None
        assert held.get("event") is None
        assert "pkt" not in held
        await ws.close()

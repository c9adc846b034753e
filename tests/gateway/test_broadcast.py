"""Broadcast: python-socketio's emit semantics, with real servers and real clients.

A bare ``socketio.AsyncServer`` under uvicorn, python-socketio clients over
websocket (and one over long-polling), and no fakes. The last tests pin the
python-engineio internals :mod:`gateway.broadcast` relies on: if an upgrade moves
them, they fail here before anything fails in production.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import engineio.async_socket
import engineio.base_socket
import pytest
import socketio
from socketio import packet as sio_packet

from gateway.broadcast import ENGINEIO_INTERNALS, Broadcast, encode_event
from parley.settings import Settings
from tests.servers import asgi_in_process

WAIT = 15.0  # seconds a client may take to see what it expects
ROOM = "project:1"


class Listener:
    """A python-socketio client that records the ``tick`` numbers (and more) it receives."""

    def __init__(self, client: socketio.AsyncClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.ticks: list[int] = []
        self.received: dict[str, list[Any]] = {}
        client.on("tick", self._tick, namespace=namespace)
        for event in ("marker", "bye", "direct", "blob"):
            client.on(event, self._recorder(event), namespace=namespace)
        client.on("ask", self._answer, namespace=namespace)

    async def _tick(self, data: dict[str, int]) -> None:
        self.ticks.append(data["n"])

    def _recorder(self, event: str) -> Any:
        async def record(data: Any = None) -> None:
            self.received.setdefault(event, []).append(data)

        return record

    async def _answer(self, data: Any) -> Any:
        return {"answered": data}

    @property
    def sid(self) -> str:
        sid = self.client.get_sid(self.namespace)
        assert sid is not None
        return str(sid)

    async def wait(self, what: str, check: Any) -> None:
        deadline = time.monotonic() + WAIT
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: ticks {self.ticks[-20:]}")
            await asyncio.sleep(0.01)

    async def wait_ticks(self, count: int) -> list[int]:
        await self.wait(f"{count} ticks", lambda: len(self.ticks) >= count)
        return self.ticks

    async def wait_for(self, event: str, count: int = 1) -> list[Any]:
        await self.wait(f"{count} {event}", lambda: len(self.received.get(event, [])) >= count)
        return self.received[event]


@pytest.fixture
async def served() -> AsyncIterator[tuple[socketio.AsyncServer, str]]:
    sio = socketio.AsyncServer(
        async_mode="asgi", namespaces="*", logger=False, engineio_logger=False
    )

    async def join_room(sid: str, room: str) -> str:
        await sio.enter_room(sid, room)
        return "joined"

    async def join_admin_room(sid: str, room: str) -> str:
        await sio.enter_room(sid, room, namespace="/admin")
        return "joined"

    async def echo(sid: str, data: Any) -> Any:
        return data

    sio.on("join", join_room)
    sio.on("join", join_admin_room, namespace="/admin")
    sio.on("echo", echo)
    async with asgi_in_process(socketio.ASGIApp(sio)) as url:
        yield sio, url


async def listener(
    url: str,
    *,
    room: str | None = None,
    namespace: str = "/",
    transports: tuple[str, ...] = ("websocket",),
) -> Listener:
    client = socketio.AsyncClient(reconnection=False)
    recorder = Listener(client, namespace)
    await client.connect(
        url, namespaces=[namespace], transports=list(transports), wait_timeout=WAIT
    )
    if room is not None:
        assert await client.call("join", room, namespace=namespace, timeout=WAIT) == "joined"
    return recorder


async def close_all(*listeners: Listener) -> None:
    for one in listeners:
        await one.client.disconnect()


@pytest.mark.parametrize(
    "data",
    [
        {"conversationId": 3, "content": 'héllo \u2028 "quoted" </script>', "seq": 1},
        None,
        "text",
        7,
        [1, {"a": None}],
        ({"first": 1}, "second"),
        {"nested": {"deep": [True, False, 1.5]}},
    ],
)
@pytest.mark.parametrize("namespace", ["/", "/admin"])
def test_the_packet_is_the_one_python_socketio_would_send(data: Any, namespace: str) -> None:
    """Same text as AsyncManager.emit's packet (tuples expand, None is no argument)."""
    if isinstance(data, tuple):
        arguments = list(data)
    elif data is None:
        arguments = []
    else:
        arguments = [data]
    theirs = sio_packet.Packet(
        sio_packet.EVENT, namespace=namespace, data=["newMessage", *arguments]
    ).encode()
    ours = encode_event("newMessage", data, namespace=namespace, codec=sio_packet.Packet.json)
    assert ours == theirs


def test_binary_data_is_refused_by_the_encoding() -> None:
    """Binary needs attachments; Broadcast hands such an emit to python-socketio."""
    with pytest.raises(TypeError):
        encode_event("blob", {"b": b"\x00"}, namespace="/", codec=sio_packet.Packet.json)


async def test_each_socket_of_the_room_gets_each_event_once_and_in_order(
    served: tuple[socketio.AsyncServer, str],
) -> None:
    sio, url = served
    inside = [await listener(url, room=ROOM) for _ in range(3)]
    other_room = await listener(url, room="project:2")
    no_room = await listener(url)
    broadcast = Broadcast(server=sio)
    for n in range(300):
        await broadcast.emit("tick", {"n": n}, to=ROOM)
        if n % 97 == 0:
            await asyncio.sleep(0.01)  # some events alone, most back to back
    # No room: every socket of the namespace. Order per socket is kept, so a socket
    # that has the marker and no tick never got one.
    await broadcast.emit("marker", {"last": True})
    for one in inside:
        assert await one.wait_ticks(300) == list(range(300))
        assert await one.wait_for("marker") == [{"last": True}]
        assert one.ticks == list(range(300))
    for one in (other_room, no_room):
        assert await one.wait_for("marker") == [{"last": True}]
        assert one.ticks == []
    await close_all(*inside, other_room, no_room)


async def test_a_long_polling_socket_gets_them_too(
    served: tuple[socketio.AsyncServer, str],
) -> None:
    """The same queue feeds a long-poll GET. Few events: python-engineio's *client*
    refuses a payload of more than 16 packets (``Payload.max_decode_packets``), and
    back-to-back events may all go out in one GET's payload; browsers have no limit."""
    sio, url = served
    polling = await listener(url, room=ROOM, transports=("polling",))
    broadcast = Broadcast(server=sio)
    for n in range(12):
        await broadcast.emit("tick", {"n": n}, to=ROOM)
    assert await polling.wait_ticks(12) == list(range(12))
    await close_all(polling)


async def test_a_socket_that_leaves_mid_broadcast_does_not_break_the_others(
    served: tuple[socketio.AsyncServer, str],
) -> None:
    sio, url = served
    broadcast = Broadcast(server=sio)
    farewells: list[str] = []

    async def disconnect(sid: str, reason: Any = None) -> None:
        # While its disconnect handler runs, the socket is still in the room, and its
        # Engine.IO socket may already be closing: emitting to the room must not fail.
        await broadcast.emit("bye", {"sid": sid}, to=ROOM)
        farewells.append(sid)

    sio.on("disconnect", disconnect)
    staying = [await listener(url, room=ROOM), await listener(url, room=ROOM)]
    hangs_up = await listener(url, room=ROOM)  # closes its Engine.IO connection
    dropped = await listener(url, room=ROOM)  # disconnected by the server
    leaves = await listener(url, room=ROOM)  # leaves the namespace politely
    leaving = [
        hangs_up.client.eio.disconnect,
        lambda: sio.disconnect(dropped.sid),
        leaves.client.disconnect,
    ]
    departures = []
    for n in range(600):
        await broadcast.emit("tick", {"n": n}, to=ROOM)
        if n % 150 == 149 and leaving:
            departures.append(asyncio.create_task(leaving.pop(0)()))
        if n % 10 == 0:
            await asyncio.sleep(0.002)
    await asyncio.gather(*departures)
    for one in staying:
        assert await one.wait_ticks(600) == list(range(600))
        assert len(await one.wait_for("bye", 3)) == 3
    assert len(farewells) == 3
    for gone in (hangs_up, dropped, leaves):
        assert gone.ticks == list(range(len(gone.ticks)))  # a prefix: in order, none twice
    await close_all(*staying)


async def test_sockets_engineio_is_closing_or_has_forgotten_are_skipped(
    served: tuple[socketio.AsyncServer, str],
) -> None:
    """The moments between Engine.IO letting go of a socket and python-socketio
    forgetting its sid, set up by hand: skipped, never an error."""
    sio, url = served
    broadcast = Broadcast(server=sio)
    healthy = await listener(url, room=ROOM)
    closing = await listener(url, room=ROOM)
    forgotten = await listener(url, room=ROOM)
    closing_socket = sio.eio.sockets[sio.manager.eio_sid_from_sid(closing.sid, "/")]
    forgotten_eio_sid = sio.manager.eio_sid_from_sid(forgotten.sid, "/")
    forgotten_socket = sio.eio.sockets.pop(forgotten_eio_sid)
    closing_socket.closing = True
    try:
        await broadcast.emit("tick", {"n": 0}, to=ROOM)
    finally:
        closing_socket.closing = False
        sio.eio.sockets[forgotten_eio_sid] = forgotten_socket
    await broadcast.emit("tick", {"n": 1}, to=ROOM)
    assert await healthy.wait_ticks(2) == [0, 1]
    # Per socket, order holds: a first tick of 1 means 0 never came.
    assert await closing.wait_ticks(1) == [1]
    assert await forgotten.wait_ticks(1) == [1]
    await close_all(healthy, closing, forgotten)


async def test_namespaces_are_kept_apart(served: tuple[socketio.AsyncServer, str]) -> None:
    sio, url = served
    main = await listener(url, room="r")
    admin = await listener(url, room="r", namespace="/admin")
    to_main, to_admin = Broadcast(server=sio), Broadcast(server=sio, namespace="/admin")
    await to_main.emit("tick", {"n": 1}, to="r")
    await to_admin.emit("tick", {"n": 2}, to="r")
    await to_main.emit("tick", {"n": 3})
    await to_admin.emit("tick", {"n": 4})
    assert await main.wait_ticks(2) == [1, 3]
    assert await admin.wait_ticks(2) == [2, 4]
    await close_all(main, admin)


async def test_acks_and_other_emits_still_work_between_broadcasts(
    served: tuple[socketio.AsyncServer, str],
) -> None:
    sio, url = served
    broadcast = Broadcast(server=sio)
    dashboard = await listener(url, room=ROOM)

    async def flood() -> None:
        for n in range(500):
            await broadcast.emit("tick", {"n": n}, to=ROOM)
            if n % 25 == 0:
                await asyncio.sleep(0.001)

    flooding = asyncio.create_task(flood())
    assert await dashboard.client.call("echo", {"x": 1}, timeout=WAIT) == {"x": 1}
    await sio.emit("direct", {"k": 1}, to=dashboard.sid)
    assert await sio.call("ask", {"q": 1}, to=dashboard.sid, timeout=WAIT) == {"answered": {"q": 1}}
    await flooding
    # Binary goes through python-socketio's own path, attachments and all.
    await broadcast.emit("blob", {"bytes": b"\x00\xff"}, to=ROOM)
    assert await dashboard.wait_for("direct") == [{"k": 1}]
    assert await dashboard.wait_for("blob") == [{"bytes": b"\x00\xff"}]
    assert await dashboard.wait_ticks(500) == list(range(500))
    await close_all(dashboard)


async def test_a_socket_whose_pong_is_overdue_is_closed_as_engineio_would(
    served: tuple[socketio.AsyncServer, str],
) -> None:
    sio, url = served
    broadcast = Broadcast(server=sio)
    healthy = await listener(url, room=ROOM)
    silent = await listener(url, room=ROOM)
    silent_sid = silent.sid
    socket = sio.eio.sockets[sio.manager.eio_sid_from_sid(silent_sid, "/")]
    socket.last_ping = time.time() - 10 * sio.eio.ping_timeout
    await broadcast.emit("tick", {"n": 0}, to=ROOM)
    # Engine.IO's verdict, as its own send gives it: closed and disconnected, not sent to.
    assert socket.closed
    assert not sio.manager.is_connected(silent_sid, "/")
    await broadcast.emit("tick", {"n": 1}, to=ROOM)
    assert await healthy.wait_ticks(2) == [0, 1]
    assert silent.ticks == []
    await close_all(healthy)
    await silent.client.disconnect()


async def test_a_message_queue_manager_sees_every_emit(settings: Settings) -> None:
    """With a pub/sub manager, an emit must reach sockets of other servers too."""
    assert settings.redis_url is not None
    channel = f"parley-test-{uuid.uuid4().hex[:8]}"
    sender = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=socketio.AsyncRedisManager(settings.redis_url, channel=channel),
    )
    holder = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=socketio.AsyncRedisManager(settings.redis_url, channel=channel),
    )

    async def join_room(sid: str, room: str) -> str:
        await holder.enter_room(sid, room)
        return "joined"

    holder.on("join", join_room)
    async with asgi_in_process(socketio.ASGIApp(holder)) as url:
        remote = await listener(url, room=ROOM)
        broadcast = Broadcast(server=sender)
        deadline = time.monotonic() + WAIT
        # The holder's manager subscribes in the background: send until it listens.
        while not remote.ticks and time.monotonic() < deadline:
            await broadcast.emit("tick", {"n": 1}, to=ROOM)
            await asyncio.sleep(0.1)
        assert remote.ticks and set(remote.ticks) == {1}
        await close_all(remote)
    await sender.shutdown()


async def test_the_python_socketio_internals_broadcast_relies_on_are_there(
    served: tuple[socketio.AsyncServer, str],
) -> None:
    """If this fails after an upgrade, re-read gateway/broadcast.py before anything else."""
    sio, url = served
    assert type(socketio.AsyncServer().manager) is socketio.AsyncManager
    # AsyncSocket.send: the ping check, then the queue. Broadcast does the same inline.
    send = inspect.getsource(engineio.async_socket.AsyncSocket.send)
    assert "self.check_ping_timeout()" in send and "self.queue.put(pkt)" in send, send
    check = inspect.getsource(engineio.async_socket.AsyncSocket.check_ping_timeout)
    assert "self.last_ping" in check and "self.server.ping_timeout" in check, check
    base = inspect.getsource(engineio.base_socket.BaseSocket.__init__)
    for name in ENGINEIO_INTERNALS[1:]:
        assert f"self.{name} =" in base, (name, base)
    one = await listener(url, room=ROOM)
    participants = dict(sio.manager.get_participants("/", ROOM))
    assert list(participants) == [one.sid]
    socket = sio.eio.sockets[participants[one.sid]]
    assert isinstance(socket, engineio.async_socket.AsyncSocket)
    assert isinstance(socket.queue, asyncio.Queue)
    assert socket.closing is False and socket.closed is False
    assert hasattr(socket, "last_ping")
    await close_all(one)

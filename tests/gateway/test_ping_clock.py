"""One timer for every socket's next ping: order, errors, re-arming, and the real server."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gateway.ping_clock import PingClock
from tests.gateway.test_engine import WAIT, engine_server, open_socket, until

INTERVAL = 0.05  # seconds


class Socket:
    def __init__(self, name: str, pinged: list[tuple[str, float]], *, fails: bool = False) -> None:
        self.name = name
        self.pinged = pinged
        self.fails = fails

    def _ping_due(self) -> None:
        self.pinged.append((self.name, asyncio.get_running_loop().time()))
        if self.fails:
            raise RuntimeError("this socket's ping broke")


async def test_each_socket_is_pinged_once_an_interval_after_it_was_scheduled() -> None:
    loop = asyncio.get_running_loop()
    clock = PingClock(interval=INTERVAL)
    pinged: list[tuple[str, float]] = []
    scheduled = {}
    for name in "abc":
        scheduled[name] = loop.time()
        clock.schedule(Socket(name, pinged))
        await asyncio.sleep(INTERVAL / 4)
    await until(lambda: len(pinged) == 3, "three pings")
    assert [name for name, _ in pinged] == ["a", "b", "c"]
    for name, at in pinged:
        assert at >= scheduled[name] + INTERVAL
    assert len(clock) == 0
    # Idle, then scheduled again: the timer is armed anew.
    clock.schedule(Socket("d", pinged))
    await until(lambda: len(pinged) == 4, "a ping after the clock ran dry")
    await asyncio.sleep(INTERVAL * 2)
    assert [name for name, _ in pinged] == ["a", "b", "c", "d"]


async def test_a_failing_ping_is_logged_and_the_others_still_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = PingClock(interval=INTERVAL)
    pinged: list[tuple[str, float]] = []
    clock.schedule(Socket("broken", pinged, fails=True))
    clock.schedule(Socket("fine", pinged))
    await until(lambda: len(pinged) == 2, "both pings")
    clock.schedule(Socket("later", pinged))
    await until(lambda: len(pinged) == 3, "a ping after the failure")
    assert [name for name, _ in pinged] == ["broken", "fine", "later"]
    assert [r.action for r in caplog.records if hasattr(r, "action")] == ["engine.ping_failed"]


async def test_the_servers_sockets_wait_for_their_pings_on_the_clock() -> None:
    """Each open socket has one entry on the server's clock, and pings keep coming."""
    sockets = 5
    async with engine_server() as (url, server), aiohttp.ClientSession() as session:
        opened = [await open_socket(session, url) for _ in range(sockets)]
        await until(lambda: len(server.ping_clock) == sockets, "every socket's ping scheduled")
        for ws, _ in opened:  # a ping round, answered by each
            assert await asyncio.wait_for(ws.receive_str(), WAIT) == "2"
            await ws.send_str("3")
        await until(lambda: len(server.ping_clock) == sockets, "the next pings scheduled")
        for ws, _ in opened:
            await ws.close()

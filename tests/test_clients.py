"""The test clients themselves: a wait that times out must fail the test."""

from __future__ import annotations

import time

import pytest
import socketio

from tests.clients import Recorder


async def test_wait_for_raises_when_the_events_never_come() -> None:
    recorder = Recorder(socketio.AsyncClient(), ["newMessage"])
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="0 of 1 'newMessage' events"):
        await recorder.wait_for("newMessage", 1, timeout=0.1)
    assert time.monotonic() - started < 2


async def test_wait_for_returns_what_arrived() -> None:
    recorder = Recorder(socketio.AsyncClient(), ["newMessage"])
    recorder.received["newMessage"].append((time.perf_counter(), {"id": 1}))
    assert await recorder.wait_for("newMessage", 1, timeout=0.1) == [{"id": 1}]

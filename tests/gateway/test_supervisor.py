"""Background tasks restart after any error or an unexpected return; cancellation ends them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from gateway.supervisor import Supervisor, supervised


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_errors_and_returns_restart_the_task_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(time.monotonic())
        if len(starts) == 1:
            raise RuntimeError("unexpected reply")
        if len(starts) == 2:
            return  # a loop that should never return
        await asyncio.Event().wait()

    task = asyncio.create_task(supervised("flaky", flaky), name="flaky")
    await wait_until(lambda: len(starts) == 3, "three starts")
    assert not task.done()
    # Backoff: 0.1 s, then 0.2 s (each ±20 %) between the starts.
    assert starts[1] - starts[0] >= 0.07
    assert starts[2] - starts[1] >= 0.15
    restarts = [r for r in caplog.records if getattr(r, "action", None) == "gateway.task_restart"]
    assert len(restarts) == 2
    assert "RuntimeError" in restarts[0].getMessage()
    assert "returned" in restarts[1].getMessage()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_stop_cancels_every_task_within_the_grace() -> None:
    supervisor = Supervisor()
    stopped: list[str] = []

    def forever(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                stopped.append(name)

        return run

    tasks = [supervisor.start(name, forever(name)) for name in ("a", "b")]
    assert [t.get_name() for t in tasks] == ["a", "b"]
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await supervisor.stop(grace=2.0)
    assert time.monotonic() - started < 2.0
    assert sorted(stopped) == ["a", "b"]
    assert all(t.cancelled() for t in tasks)

"""``parley run``'s children: restarted when they exit, paused, stopped within a grace period."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time

from parley.supervisor import Child

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]


async def wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]


async def test_a_child_that_exits_is_started_again() -> None:
    output = io.StringIO()
    child = Child(name="sleeper", command=SLEEPER, env=os.environ, output=output)
    await child.start()
    try:
        first = child.pid
        assert first is not None
        await wait_for(lambda: "sleeper  | up" in output.getvalue())
        os.kill(first, 9)
        await wait_for(lambda: child.pid not in (None, first) and child.restarts == 1)
        await wait_for(lambda: output.getvalue().count("| up") == 2)
    finally:
        await child.stop()
    assert child.pid is not None
    await asyncio.sleep(1.5)
    assert child.restarts == 1, "a stopped child stays stopped"


async def test_pause_freezes_and_resume_thaws() -> None:
    child = Child(name="sleeper", command=SLEEPER, env=os.environ, output=io.StringIO())
    await child.start()
    try:
        pid = child.pid
        assert pid is not None
        child.pause()
        await wait_for(lambda: state(pid) == "T")
        child.resume()
        await wait_for(lambda: state(pid) == "S")
    finally:
        await child.stop()


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('up', flush=True); time.sleep(60)",
    ]
    output = io.StringIO()
    child = Child(name="stubborn", command=stubborn, env=os.environ, output=output)
    await child.start()
    await wait_for(lambda: "| up" in output.getvalue())
    started = time.monotonic()
    await child.stop(grace=0.5)
    assert time.monotonic() - started < 5

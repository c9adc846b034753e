"""Waiting that notices a stopping worker, so no retry loop outlives the shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from streams.errors import WorkerStopping

STOP_POLL_INTERVAL = 0.1  # seconds between checks for a stop while waiting

Stopping = Callable[[], bool]


def raise_if_stopping(stopping: Stopping) -> None:
    if stopping():
        raise WorkerStopping("the worker is stopping; the batch stays unacknowledged")


async def pause(delay: float, stopping: Stopping) -> None:
    """Sleep ``delay`` seconds; raise :class:`WorkerStopping` within a poll of a stop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    while (left := deadline - loop.time()) > 0:
        raise_if_stopping(stopping)
        await asyncio.sleep(min(left, STOP_POLL_INTERVAL))

"""Named background tasks that only cancellation ends.

The gateway's lifespan runs its long-lived loops (the two subscriptions, the
presence heartbeat and sweeper) through :class:`Supervisor`: an error, or a loop
that returns when it never should, is logged and the loop is started again
after a backoff. Stopping cancels them all and waits a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import Counter

from persistence.backoff import Backoff

logger = logging.getLogger("parley.supervisor")

STOP_TIMEOUT = 5.0  # seconds the tasks get to stop once cancelled
HEALTHY_RUN = 30.0  # seconds; a run that lasted this long starts the backoff afresh

RESTARTS = Counter(
    "parley_gateway_task_restarts_total", "Background tasks restarted after an error", ["task"]
)


async def supervised(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run ``run()`` again and again, with backoff, until cancelled."""
    backoff = Backoff()
    while True:
        started = time.monotonic()
        error: Exception | None = None
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
        if time.monotonic() - started > HEALTHY_RUN:
            backoff.reset()
        delay = backoff.next()
        logger.error(
            "%s %s; restarting in %.1fs",
            name,
            f"failed ({type(error).__name__}: {error})" if error else "returned",
            delay,
            exc_info=error,
            extra={"action": "gateway.task_restart", "task": name},
        )
        RESTARTS.labels(task=name).inc()
        await asyncio.sleep(delay)


class Supervisor:
    """Starts named, supervised tasks and stops them together."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        task = asyncio.create_task(supervised(name, run), name=name)
        self._tasks.append(task)
        return task

    async def stop(self, grace: float = STOP_TIMEOUT) -> None:
        """Cancel every task and wait for them, at most ``grace`` seconds."""
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

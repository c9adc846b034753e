"""Open-loop load: messages at a fixed rate, spread over the widgets, whatever the replies do.

A slow or failing ack does not slow the sender (each send is its own task), so a
fault meets the load it would meet in production. When the machine cannot keep
up, the achieved rate is reported rather than hidden.
"""

from __future__ import annotations

import asyncio
import time

from tests.faults.widget import Widget


class Load:
    """Sends ``rate`` messages a second for ``duration`` seconds, round-robin over widgets."""

    def __init__(self, *, widgets: list[Widget], rate: float, duration: float) -> None:
        self._widgets = widgets
        self._rate = rate
        self.total = int(rate * duration)
        self.started = 0.0
        self.finished = 0.0

    @property
    def achieved_rate(self) -> float:
        elapsed = self.finished - self.started
        return self.total / elapsed if elapsed > 0 else 0.0

    async def run(self) -> None:
        self.started = time.monotonic()
        for index in range(self.total):
            delay = self.started + index / self._rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._widgets[index % len(self._widgets)].send(f"load message {index}")
        self.finished = time.monotonic()


class LoopLag:
    """How late this process's event loop wakes up: the load generator's own health.

    When it is seconds late, the widgets' send times and acks are the machine's
    figures, not Parley's; the report shows it next to the latencies.
    """

    TICK = 0.1  # seconds

    def __init__(self) -> None:
        self.worst = 0.0  # seconds

    async def watch(self) -> None:
        while True:
            began = time.monotonic()
            await asyncio.sleep(self.TICK)
            self.worst = max(self.worst, time.monotonic() - began - self.TICK)

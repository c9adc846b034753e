"""One timer for every socket's next Engine.IO ping, instead of one timer per socket.

Each socket's next ping is due ``ping_interval`` after its last pong, the same
interval for every socket of a server, so the due times arrive in the order
they were scheduled: a FIFO of ``(due, socket)`` is already sorted, and one
event-loop timer armed for its head serves them all. A timer handle per socket
(with its bound method and uvloop's handle) was about 650 bytes per idle socket
(tracemalloc, 4,000 sockets); an entry here is under 100.

A socket closed before its ping is due stays in the FIFO until then and is
skipped (the socket's own ``_ping_due`` checks). An error in one socket's ping
is logged and the others go on; the timer is re-armed whatever happens.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Protocol

logger = logging.getLogger("parley.engine")


class Pingable(Protocol):
    def _ping_due(self) -> None: ...


class PingClock:
    """Calls each scheduled socket's ``_ping_due`` once ``interval`` seconds have passed."""

    __slots__ = ("_due", "_interval", "_timer")

    def __init__(self, *, interval: float) -> None:
        self._interval = interval  # seconds
        self._due: collections.deque[tuple[float, Pingable]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, socket: Pingable) -> None:
        """``socket._ping_due()`` runs ``interval`` seconds from now, on this loop."""
        loop = asyncio.get_running_loop()
        self._due.append((loop.time() + self._interval, socket))
        if self._timer is None:
            self._timer = loop.call_at(self._due[0][0], self._tick)

    def _tick(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        try:
            while self._due and self._due[0][0] <= now:
                _, socket = self._due.popleft()
                try:
                    socket._ping_due()
                except Exception:
                    logger.exception(
                        "a socket's ping failed", extra={"action": "engine.ping_failed"}
                    )
        finally:
            if self._due and self._timer is None:
                self._timer = loop.call_at(self._due[0][0], self._tick)

"""Exponential backoff with jitter, shared by every reconnecting loop."""

from __future__ import annotations

import random

INITIAL_DELAY = 0.1  # seconds
MAX_DELAY = 5.0  # seconds
FACTOR = 2.0


class Backoff:
    """``next()`` returns the delay to wait before the next attempt."""

    def __init__(self, *, initial: float = INITIAL_DELAY, maximum: float = MAX_DELAY) -> None:
        self._initial = initial
        self._maximum = maximum
        self._current = initial

    def next(self) -> float:
        delay = self._current
        self._current = min(self._current * FACTOR, self._maximum)
        # Jitter keeps many relays or gateways from reconnecting in lock-step.
        return float(delay * random.uniform(0.8, 1.2))

    def reset(self) -> None:
        self._current = self._initial

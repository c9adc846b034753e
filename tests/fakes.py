"""Fakes of Parley's own interfaces (never of PostgreSQL, Redis or the broker)."""

from __future__ import annotations

import asyncio
import json
from typing import Any


class RecordingPublisher:
    """A :class:`persistence.outbox.Publisher` that keeps what it was given."""

    def __init__(self, *, delay: float = 0.0, fail_times: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self._delay = delay
        self._fail_times = fail_times

    async def publish(self, message: str) -> None:
        if self._fail_times:
            self._fail_times -= 1
            raise ValueError("refused by the fake")
        if self._delay:
            await asyncio.sleep(self._delay)
        self.events.append(json.loads(message))


class RecordingEmitter:
    """A :class:`gateway.fanout.Emitter` that records (event, data, room)."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, Any, str | None]] = []

    async def emit(self, event: str, data: Any = None, *, to: str | None = None) -> None:
        self.emitted.append((event, data, to))

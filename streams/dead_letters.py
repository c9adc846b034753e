"""The dead-letter topic: events set aside, each with the reason, never silently dropped.

A dead letter keeps the original value, key and headers, and adds ``error`` (the
reason), ``error-class`` (``invalid``, ``rejected``, ``refused``, ``contended``),
and where the event came from (``source-topic``, ``source-partition``,
``source-offset``), so an operator can fix and replay it. The source event is
acknowledged only after the broker confirmed its dead letter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import Counter

from persistence.backoff import Backoff
from streams.stopping import Stopping, pause, raise_if_stopping

logger = logging.getLogger("parley.agent")

SEND_TIMEOUT = 10.0  # seconds for the broker to confirm one dead letter
REASON_BYTES = 1_000  # bytes of the reason kept in the ``error`` header

HEADER_ERROR = "error"
HEADER_ERROR_CLASS = "error-class"
SOURCE_HEADERS = ("source-topic", "source-partition", "source-offset")

INVALID = "invalid"  # not a well-formed Parley event, or holds what PostgreSQL cannot store

DEAD_LETTERS = Counter(
    "parley_agent_dead_letters_total", "Events sent to the dead-letter topic", ["reason"]
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RawEvent:
    """A topic record as the agent received it, before decoding."""

    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = dataclasses.field(default_factory=list)
    topic: str = ""
    partition: int = -1
    offset: int = -1


class DeadLetterSink(Protocol):
    async def send(
        self, *, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        """Return once the broker confirmed the write."""


class FaustDeadLetterSink:
    """Writes to a Faust topic (raw serializers) and waits for the broker's ack."""

    def __init__(self, *, topic: Any, timeout: float = SEND_TIMEOUT) -> None:
        self._topic = topic
        self._timeout = timeout

    async def send(
        self, *, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        # force: Faust would otherwise attach the send to the event being
        # processed and write it only when that event is acked.
        pending = await self._topic.send(key=key, value=value, headers=headers, force=True)
        await asyncio.wait_for(pending, self._timeout)


class DeadLetters:
    """Sends dead letters, retrying until the broker confirms or the worker stops."""

    def __init__(
        self,
        *,
        sink: DeadLetterSink,
        stopping: Stopping,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self._sink = sink
        self._stopping = stopping
        self._backoff = backoff

    async def send(self, event: RawEvent, *, reason: str, kind: str) -> None:
        headers = [
            (str(name), bytes(value or b"")) for name, value in event.headers if not _ours(name)
        ]
        headers += [
            (HEADER_ERROR, reason.encode(errors="replace")[:REASON_BYTES]),
            (HEADER_ERROR_CLASS, kind.encode()),
            ("source-topic", event.topic.encode()),
            ("source-partition", str(event.partition).encode()),
            ("source-offset", str(event.offset).encode()),
        ]
        backoff = self._backoff()
        while True:
            raise_if_stopping(self._stopping)
            try:
                await self._sink.send(key=event.key, value=event.value or b"", headers=headers)
                break
            except Exception as exc:
                delay = backoff.next()
                logger.warning(
                    "dead-lettering failed (%r); retrying in %.1fs",
                    exc,
                    delay,
                    extra={"action": "agent.dead_letter_retry"},
                )
                await pause(delay, self._stopping)
        DEAD_LETTERS.labels(reason=kind).inc()
        logger.error(
            "dead-lettered %s[%d]@%d (%s): %s",
            event.topic,
            event.partition,
            event.offset,
            kind,
            reason,
            extra={"action": "agent.dead_letter"},
        )


def _ours(name: str) -> bool:
    return name in (HEADER_ERROR, HEADER_ERROR_CLASS, *SOURCE_HEADERS)

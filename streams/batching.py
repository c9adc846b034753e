"""Storing one batch: wait out outages, retry races, split around refused data.

The store writes a batch in one transaction, so one event PostgreSQL refuses
fails all of it. :class:`BatchStorer` answers each kind of failure
(:mod:`persistence.errors`) differently:

- the database is unavailable: wait with backoff, without end (skipping would
  lose accepted messages), checking between waits whether the worker is stopping;
- a transient concurrency failure: retry up to ``TRANSIENT_ATTEMPTS`` times, then
  treat it as a data failure (a retry that keeps failing is not transient);
- a data failure: split the batch in halves and store the first, then the second,
  down to single events, so everything else is stored in the original order and
  only the refused events come back, each with its reason.

Any other exception from the store is a data failure too: no event, whatever it
holds, may stop the events behind it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from prometheus_client import Counter

from persistence.backoff import Backoff
from persistence.errors import DatabaseUnavailable, DataRejected, TransientFailure, reason
from persistence.store import AppendResult, IncomingMessage
from streams.stopping import Stopping, pause, raise_if_stopping

logger = logging.getLogger("parley.agent")

TRANSIENT_ATTEMPTS = 5  # tries of a batch that keeps failing on a race before it is split
LOUD_AFTER = 5  # consecutive failures before a retry is logged as an error

# Why an event was set aside, for the dead-letter metric.
REJECTED = "rejected"  # the store declined it (unknown project, conversation, agent)
REFUSED = "refused"  # PostgreSQL refused its data
CONTENDED = "contended"  # it kept failing on a concurrency race

RETRIES = Counter(
    "parley_agent_retries_total", "Failed attempts to store a batch, retried", ["kind"]
)
SPLITS = Counter("parley_agent_batch_splits_total", "Batches split to find refused events")
STORED = Counter("parley_agent_messages_stored_total", "Messages stored by the agent")
DUPLICATES = Counter("parley_agent_duplicates_total", "Redelivered messages recognised")


class Store(Protocol):
    async def append(self, batch: Sequence[IncomingMessage]) -> AppendResult: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class Refusal:
    """An event set aside: which message, why, and the reason's class for metrics."""

    message: IncomingMessage
    reason: str
    kind: str


@dataclasses.dataclass(kw_only=True)
class Outcome:
    parts: list[AppendResult] = dataclasses.field(default_factory=list)  # each part stored
    duplicates: int = 0
    refused: list[Refusal] = dataclasses.field(default_factory=list)

    @property
    def stored_count(self) -> int:
        return sum(len(part.stored_json) for part in self.parts)

    @property
    def stored(self) -> list[dict[str, Any]]:
        """The stored messages' shapes, in order (decoded only when asked for)."""
        return [shape for part in self.parts for shape in part.stored]


class _DataFailure(Exception):
    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class BatchStorer:
    """Stores batches in order; see the module docstring for the failure handling."""

    def __init__(
        self,
        *,
        store: Store,
        stopping: Stopping,
        transient_attempts: int = TRANSIENT_ATTEMPTS,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self._store = store
        self._stopping = stopping
        self._transient_attempts = transient_attempts
        self._backoff = backoff

    async def store(self, batch: list[IncomingMessage]) -> Outcome:
        """Store what can be stored, in order; return it and the events refused.

        Raises :class:`WorkerStopping` when the worker stops before the batch is
        stored: the caller must then acknowledge nothing.
        """
        outcome = Outcome()
        await self._store_part(batch, outcome)
        STORED.inc(outcome.stored_count)
        DUPLICATES.inc(outcome.duplicates)
        return outcome

    async def _store_part(self, batch: list[IncomingMessage], outcome: Outcome) -> None:
        if not batch:
            return
        try:
            result = await self._attempt(batch)
        except _DataFailure as failure:
            if len(batch) == 1:
                outcome.refused.append(
                    Refusal(message=batch[0], reason=failure.reason, kind=failure.kind)
                )
                return
            SPLITS.inc()
            logger.warning(
                "a batch of %d was refused (%s); splitting it",
                len(batch),
                failure.reason,
                extra={"action": "agent.split"},
            )
            middle = len(batch) // 2
            await self._store_part(batch[:middle], outcome)
            await self._store_part(batch[middle:], outcome)
            return
        outcome.parts.append(result)
        outcome.duplicates += result.duplicates
        outcome.refused.extend(
            Refusal(message=message, reason=why, kind=REJECTED) for message, why in result.rejected
        )

    async def _attempt(self, batch: list[IncomingMessage]) -> AppendResult:
        """One batch until it is stored or refused; unavailability is waited out."""
        backoff = self._backoff()
        failures = 0
        transient = 0
        while True:
            raise_if_stopping(self._stopping)
            try:
                return await self._store.append(batch)
            except DatabaseUnavailable as exc:
                kind = "unavailable"
                cause: Exception = exc
            except TransientFailure as exc:
                transient += 1
                if transient >= self._transient_attempts:
                    raise _DataFailure(str(exc), CONTENDED) from exc
                kind = "transient"
                cause = exc
            except DataRejected as exc:
                raise _DataFailure(str(exc), REFUSED) from exc
            except Exception as exc:
                # A bug, not the database: still no reason to hold up other events.
                logger.exception(
                    "storing a batch of %d raised unexpectedly",
                    len(batch),
                    extra={"action": "agent.store_error"},
                )
                raise _DataFailure(reason(exc), REFUSED) from exc
            failures += 1
            RETRIES.labels(kind=kind).inc()
            delay = backoff.next()
            logger.log(
                logging.ERROR if failures >= LOUD_AFTER else logging.WARNING,
                "storing a batch of %d failed (%s); retrying in %.1fs",
                len(batch),
                cause,
                delay,
                extra={"action": "agent.retry"},
            )
            await pause(delay, self._stopping)

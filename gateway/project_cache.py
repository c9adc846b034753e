"""Project lookups at connect, cached: a connect flood or a PostgreSQL outage costs no query.

Fresh entries answer for ``ttl`` seconds. After that the next connect asks the
database again; when PostgreSQL is unavailable the stale entry keeps answering
(up to ``max_stale`` seconds), so widgets keep connecting and sending onto the
topic while the database is away. Unknown project ids are cached too, briefly,
so probing ids cannot reach the pool either. Changes to a project (origins,
identity verification, a rotated secret) reach each gateway within ``ttl``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Protocol

from prometheus_client import Counter

from persistence.directory import Project
from persistence.errors import DatabaseUnavailable, NotFound

logger = logging.getLogger("parley.project_cache")

PROJECT_CACHE_SIZE = 10_000  # projects held per gateway
PROJECT_CACHE_TTL = 30.0  # seconds an entry answers before it is looked up again
PROJECT_CACHE_MAX_STALE = 6 * 3600.0  # seconds a stale entry may answer while PostgreSQL is down
MISSING_TTL = 10.0  # seconds an unknown project id is remembered as unknown

LOOKUPS = Counter(
    "parley_gateway_project_lookups_total",
    "Project lookups at connect, by how they were answered",
    ["outcome"],
)


class ProjectSource(Protocol):
    """What the cache reads from: :class:`persistence.directory.Directory`."""

    async def get_project(self, project_id: int) -> Project: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Entry:
    project: Project | None  # None: the id does not exist
    fetched_at: float


class ProjectCache:
    """A bounded LRU of projects by id, with a TTL and stale answers during outages."""

    def __init__(
        self,
        *,
        directory: ProjectSource,
        size: int = PROJECT_CACHE_SIZE,
        ttl: float = PROJECT_CACHE_TTL,
        max_stale: float = PROJECT_CACHE_MAX_STALE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._size = size
        self._ttl = ttl
        self._max_stale = max_stale
        self._clock = clock
        self._entries: collections.OrderedDict[int, _Entry] = collections.OrderedDict()
        # One lookup per project at a time: a burst of connects shares it.
        self._inflight: dict[int, asyncio.Task[Project]] = {}

    async def get(self, project_id: int) -> Project:
        """The project; :class:`NotFound` or :class:`DatabaseUnavailable` as the directory."""
        now = self._clock()
        entry = self._entries.get(project_id)
        if entry is not None:
            self._entries.move_to_end(project_id)
            age = now - entry.fetched_at
            if age < (self._ttl if entry.project is not None else MISSING_TTL):
                LOOKUPS.labels("cached").inc()
                return _answer(project_id, entry)
        try:
            project: Project | None = await self._lookup(project_id)
        except NotFound:
            project = None
        except DatabaseUnavailable:
            if entry is not None and now - entry.fetched_at < self._max_stale:
                LOOKUPS.labels("stale").inc()
                logger.info(
                    "database unavailable; project %s answered from the cache",
                    project_id,
                    extra={"action": "project_cache.stale"},
                )
                return _answer(project_id, entry)
            LOOKUPS.labels("unavailable").inc()
            raise
        fresh = _Entry(project=project, fetched_at=self._clock())
        self._entries[project_id] = fresh
        self._entries.move_to_end(project_id)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return _answer(project_id, fresh)

    async def _lookup(self, project_id: int) -> Project:
        task = self._inflight.get(project_id)
        if task is not None:
            LOOKUPS.labels("shared").inc()
        else:
            LOOKUPS.labels("fetched").inc()  # one query of the database
            task = asyncio.create_task(
                self._directory.get_project(project_id), name=f"project-lookup-{project_id}"
            )
            self._inflight[project_id] = task
            task.add_done_callback(lambda done: self._settled(project_id, done))
        # Shielded: one waiter's cancellation must not cancel the others' lookup.
        return await asyncio.shield(task)

    def _settled(self, project_id: int, task: asyncio.Task[Project]) -> None:
        if self._inflight.get(project_id) is task:
            del self._inflight[project_id]
        if not task.cancelled():
            task.exception()  # retrieved, even when every waiter went away

    def __len__(self) -> int:
        return len(self._entries)


def _answer(project_id: int, entry: _Entry) -> Project:
    if entry.project is None:
        raise NotFound(f"project {project_id} does not exist")
    return entry.project

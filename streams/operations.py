"""What an operator asks of the topics, shared by ``parley`` and ``faust -A streams.app``.

Each function takes the settings and writes JSON, one object per line, so the
two command lines print the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from parley.settings import Settings
from streams import replay as dead_letters
from streams.lag import group_lag, kafka_offsets
from streams.tail import tail
from streams.topics import create_parley_topics, parley_topics

Write = Callable[[str], object]


def _line(write: Write, data: Any) -> None:
    write(json.dumps(data, default=str, ensure_ascii=False))


async def create(settings: Settings, write: Write) -> None:
    created = await create_parley_topics(settings)
    names = [spec.name for spec in parley_topics(settings)]
    _line(write, {"created": created, "existing": [n for n in names if n not in created]})


async def listing(settings: Settings, write: Write) -> None:
    """One line per topic: partitions, retention, per-partition end offset and group lag."""
    async with kafka_offsets(settings) as reader:
        for spec in parley_topics(settings):
            rows = await group_lag(reader, group=settings.worker_id, topics=[spec.name])
            _line(
                write,
                {
                    "topic": spec.name,
                    "exists": bool(rows),
                    "role": spec.role,
                    "partitions": len(rows),
                    "expectedPartitions": spec.partitions,
                    "retentionMs": spec.retention_ms,
                    "group": settings.worker_id,
                    "lag": sum(row.lag for row in rows),
                    "offsets": [
                        {
                            "partition": row.partition,
                            "end": row.end,
                            "committed": row.committed,
                            "lag": row.lag,
                        }
                        for row in rows
                    ],
                },
            )


async def tail_topic(
    settings: Settings,
    write: Write,
    *,
    topic: str,
    from_beginning: bool,
    limit: int | None,
    follow: bool,
) -> None:
    async for record in tail(
        settings, topic, from_beginning=from_beginning, limit=limit, follow=follow
    ):
        _line(write, record)


async def show_dead_letters(settings: Settings, write: Write, *, limit: int | None) -> None:
    for record in await dead_letters.show(settings, limit=limit):
        _line(write, record)


async def replay_dead_letters(settings: Settings, write: Write, *, from_beginning: bool) -> None:
    _line(write, await dead_letters.replay(settings, from_beginning=from_beginning))

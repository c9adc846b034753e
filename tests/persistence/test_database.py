"""An exhausted pool answers DatabaseUnavailable within the pool timeout; it never hangs."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from parley.settings import Settings
from persistence.database import create_engine
from persistence.directory import Directory
from persistence.errors import DatabaseUnavailable

POOL_TIMEOUT = 0.5  # seconds, short for the test


async def test_an_exhausted_pool_answers_unavailable_quickly(settings: Settings) -> None:
    assert settings.database_url is not None
    engine = create_engine(
        settings.database_url, pool_size=2, max_overflow=0, pool_timeout=POOL_TIMEOUT
    )
    directory = Directory(engine=engine)
    project = await directory.create_project(name="Acme")
    try:
        async with contextlib.AsyncExitStack() as held:
            for _ in range(2):  # every connection of the pool, held by someone slow
                await held.enter_async_context(engine.connect())
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable):
                async with asyncio.timeout(10):  # a hang fails here instead
                    await directory.get_project(project.id)
            assert time.monotonic() - started < POOL_TIMEOUT + 2
        assert (await directory.get_project(project.id)).id == project.id  # and recovers
    finally:
        await engine.dispose()

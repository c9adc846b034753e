"""Engine factory and the one health probe; callers own the engine's lifetime."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from parley.settings import to_asyncpg_url
from persistence.errors import DatabaseUnavailable, wrap_errors

POOL_SIZE = 10  # connections
POOL_OVERFLOW = 10  # connections
# A request waits this long for a pooled connection, then gets DatabaseUnavailable
# (503 / `unavailable`) instead of hanging behind a flood.
POOL_TIMEOUT = 3.0  # seconds
CONNECT_TIMEOUT = 5.0  # seconds
COMMAND_TIMEOUT = 30.0  # seconds
PING_TIMEOUT = 2.0  # seconds


def create_engine(
    database_url: str,
    *,
    pool_size: int = POOL_SIZE,
    max_overflow: int = POOL_OVERFLOW,
    pool_timeout: float = POOL_TIMEOUT,
    pre_ping: bool = True,
) -> AsyncEngine:
    """An async engine on asyncpg; pre-ping drops connections a restart killed.

    ``pre_ping=False`` saves a round trip per checkout, for a caller that retries
    a failed unit of work anyway: the error a dead connection raises invalidates
    the pool, and the retry gets fresh connections.
    """
    return create_async_engine(
        to_asyncpg_url(database_url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=pre_ping,
        connect_args={"timeout": CONNECT_TIMEOUT, "command_timeout": COMMAND_TIMEOUT},
    )


async def ping(engine: AsyncEngine, *, limit: float = PING_TIMEOUT) -> None:
    """Raise :class:`DatabaseUnavailable` unless ``SELECT 1`` answers in time."""
    try:
        async with asyncio.timeout(limit), wrap_errors(), engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except TimeoutError as exc:
        raise DatabaseUnavailable("database did not answer in time") from exc

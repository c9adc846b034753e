"""Apply the Alembic migrations; the schema is never created any other way."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config

from parley.settings import to_plain_url
from persistence.errors import DatabaseUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT = 5.0  # seconds


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to ``revision``; safe to run on every start."""
    command.upgrade(alembic_config(database_url), revision)


async def ensure_database(database_url: str) -> None:
    """Create the database named in the URL when the server lacks it."""
    plain = to_plain_url(database_url)
    base, _, name = plain.rpartition("/")
    name = name.split("?", 1)[0]
    try:
        conn = await asyncpg.connect(f"{base}/postgres", timeout=CONNECT_TIMEOUT)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        host = base.rsplit("@", 1)[-1]
        raise DatabaseUnavailable(f"PostgreSQL at {host} cannot be reached ({exc})") from exc
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            quoted = name.replace('"', '""')
            await conn.execute(f'CREATE DATABASE "{quoted}"')
    finally:
        await conn.close()


def prepare(database_url: str) -> None:
    """Create the database if missing, then migrate it."""
    asyncio.run(ensure_database(database_url))
    upgrade(database_url)

"""Apply the Alembic migrations; the schema is never created any other way.

Processes refuse a database whose revision is not this code's head
(:func:`require_schema`): the gateway's ``/readyz`` answers 503 and the worker
does not start, so a rollout cannot go live on an unmigrated database.
``parley migrate`` holds an advisory lock while it upgrades, so several pods'
init containers can run it at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.settings import to_plain_url
from persistence.errors import DatabaseUnavailable, PersistenceError, wrap_errors
from persistence.revisions import shipped

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
CONNECT_TIMEOUT = 5.0  # seconds
# pg_advisory_lock key held by `parley migrate` ("parley" in ASCII, an arbitrary constant).
MIGRATION_LOCK = 0x7061726C6579


class SchemaOutdated(PersistenceError):
    """The database's schema revision is not the one this code was written for."""


def alembic_config(database_url: str) -> Config:
    # Imported here: the gateway and the worker check revisions (persistence.revisions)
    # but never migrate, and Alembic would cost each of them 11 MB.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to ``revision``; safe to run on every start."""
    from alembic import command

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


async def _upgrade_locked(database_url: str) -> None:
    try:
        conn = await asyncpg.connect(to_plain_url(database_url), timeout=CONNECT_TIMEOUT)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseUnavailable(f"PostgreSQL cannot be reached ({exc})") from exc
    try:
        # Session-level: released when this connection closes, even after a crash.
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        # Alembic runs its own event loop (migrations/env.py): give it a thread.
        await asyncio.to_thread(upgrade, database_url)
    finally:
        await conn.close()


def prepare(database_url: str) -> None:
    """Create the database if missing, then migrate it (one migrator at a time)."""
    asyncio.run(ensure_database(database_url))
    asyncio.run(_upgrade_locked(database_url))


def head_revision() -> str:
    """The newest migration this code ships."""
    return shipped().head


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's revision; None before the first migration."""
    async with wrap_errors(), engine.connect() as conn:
        exists = await conn.scalar(sa.text("SELECT to_regclass('alembic_version') IS NOT NULL"))
        if not exists:
            return None
        revision = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
    return None if revision is None else str(revision)


def known_revisions() -> frozenset[str]:
    return shipped().known


async def require_schema(engine: AsyncEngine) -> None:
    """Raise SchemaOutdated while the database is behind this code's head revision.

    A revision this code does not know is newer (a rollout migrated ahead of this
    pod): the old pod keeps serving until it is replaced, which is why
    migrations must stay backwards compatible for one release (expand, then contract).
    """
    current = await current_revision(engine)
    head = head_revision()
    if current is None or (current != head and current in known_revisions()):
        raise SchemaOutdated(
            f"the database is at schema revision {current or 'none'}, this code needs"
            f" {head}: run `parley migrate`"
        )

"""The schema revision gates the gateway's readiness and the worker's start."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.settings import Settings
from persistence.database import create_engine
from persistence.schema import (
    SchemaOutdated,
    current_revision,
    ensure_database,
    head_revision,
    known_revisions,
    prepare,
    require_schema,
)
from tests.servers import ROOT, gateway_in_process
from tests.services import ServiceSet, settings_env


async def set_revision(engine: AsyncEngine, revision: str | None) -> None:
    async with engine.begin() as conn:
        if revision is None:
            await conn.execute(sa.text("DROP TABLE alembic_version"))
        else:
            await conn.execute(
                sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
            )


def older_revision() -> str:
    return sorted(known_revisions() - {head_revision()})[0]


async def test_a_migrated_database_passes(engine: AsyncEngine) -> None:
    assert await current_revision(engine) == head_revision()
    await require_schema(engine)


async def test_an_older_or_missing_revision_is_refused(engine: AsyncEngine) -> None:
    await set_revision(engine, older_revision())
    with pytest.raises(SchemaOutdated, match="run `parley migrate`"):
        await require_schema(engine)
    await set_revision(engine, None)
    with pytest.raises(SchemaOutdated, match="revision none"):
        await require_schema(engine)


async def test_a_newer_revision_keeps_old_code_serving(engine: AsyncEngine) -> None:
    # A rollout migrated ahead of this (old) pod: it must not leave the Service.
    await set_revision(engine, "ffffffffffff")
    await require_schema(engine)


async def test_readyz_names_the_schema_until_migrated(
    settings: Settings, engine: AsyncEngine
) -> None:
    async with gateway_in_process(settings) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/readyz")).status_code == 200
        await set_revision(engine, older_revision())
        down = await client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["failing"] == ["schema"]
        await set_revision(engine, head_revision())  # as `parley migrate` would
        assert (await client.get("/readyz")).status_code == 200


async def test_concurrent_migrations_wait_for_each_other(services: ServiceSet) -> None:
    # Several pods' init containers run `parley migrate` on an empty database at once.
    name = f"parley_lock_{uuid.uuid4().hex[:10]}"
    url = services.database_url(name)
    await ensure_database(url)
    try:
        await asyncio.gather(*(asyncio.to_thread(prepare, url) for _ in range(3)))
        engine = create_engine(url, pool_size=1)
        try:
            assert await current_revision(engine) == head_revision()
        finally:
            await engine.dispose()
    finally:
        await services.drop_database(name)


def test_the_worker_refuses_an_unmigrated_database(settings: Settings, engine: AsyncEngine) -> None:
    asyncio.run(set_revision(engine, older_revision()))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "faust",
            "-A",
            "streams.app",
            "worker",
            "-l",
            "info",
            "--without-web",
        ],
        env={**os.environ, **settings_env(settings)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode != 0
    assert "run `parley migrate`" in result.stdout + result.stderr

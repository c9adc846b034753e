"""Fixtures: one set of real services per session, one database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.settings import Secret, Settings
from persistence.database import create_engine
from persistence.directory import Directory
from tests.services import ServiceSet


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceSet]:
    root = tmp_path_factory.mktemp("services")
    started = ServiceSet.start(Settings.from_env({**os.environ, "PARLEY_SECRET": "x"}), root)
    try:
        started.create_template()
        yield started
    finally:
        started.stop()


@pytest.fixture
async def database_url(services: ServiceSet) -> AsyncIterator[str]:
    name = await services.clone_template()
    try:
        yield services.database_url(name)
    finally:
        await services.drop_database(name)


@pytest.fixture
def settings(services: ServiceSet, database_url: str, tmp_path: Path) -> Settings:
    """Settings isolated to this test: its own database, topics, channel and group."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        database_url=database_url,
        redis_url=services.redis_url,
        kafka_bootstrap_servers=services.bootstrap_servers,
        secret=Secret(f"test-secret-{tag}"),
        data_dir=tmp_path,
        topic_prefix=f"t{tag}.",
        events_channel=f"parley:events:{tag}",
        worker_id=f"parley-worker-{tag}",
        topic_partitions=4,
        fetch_wait_ms=services.fetch_wait_ms,
        relay_poll_interval=0.5,
        # Every test client comes from 127.0.0.1: the per-address limits are lifted
        # here and set low in the tests that exercise them.
        connect_burst=10_000,
        max_sockets_per_address=10_000,
        new_visitor_limit=10_000,
    )


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    assert settings.database_url is not None
    created = create_engine(settings.database_url, pool_size=5)
    try:
        yield created
    finally:
        await created.dispose()


@pytest.fixture
def directory(engine: AsyncEngine) -> Directory:
    return Directory(engine=engine)

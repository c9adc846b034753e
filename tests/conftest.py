"""Fixtures: one set of real services per session, one database per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.settings import Settings
from persistence.database import create_engine
from persistence.directory import Directory
from tests.services import ServiceSet, isolated_settings


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceSet]:
    root = tmp_path_factory.mktemp("services")
    started = ServiceSet.start(Settings.from_env({**os.environ, "PARLEY_SECRET": "x" * 32}), root)
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
    return isolated_settings(services, database_url, tmp_path)


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

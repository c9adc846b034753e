"""Failure classification against a real PostgreSQL: wait, retry, or set the data aside."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.embedded import free_port
from persistence.database import create_engine
from persistence.directory import Directory
from persistence.errors import (
    DatabaseUnavailable,
    DataRejected,
    Failure,
    classify,
    reason,
    sqlstate,
)
from persistence.store import MessageStore
from tests.factories import incoming, uid


async def failure_of(engine: AsyncEngine, *statements: str, **params: object) -> BaseException:
    with pytest.raises(Exception) as caught:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(sa.text(statement), params)
    return caught.value


@pytest.mark.parametrize(
    ("statement", "params", "code"),
    [
        ("SELECT CAST(:v AS text)", {"v": "nul\x00"}, "22021"),
        ("SELECT CAST(:v AS jsonb)", {"v": '{"a": "\\u0000"}'}, "22P05"),
        ("SELECT CAST(:v AS jsonb)", {"v": '{"a": "\\ud800"}'}, "22P02"),
        ("SELECT CAST(:v AS text)", {"v": "lone \ud800"}, "22000"),  # asyncpg cannot encode it
        ("SELECT CAST(:v AS bigint)", {"v": 2**70}, "22000"),
    ],
)
async def test_refused_data_is_a_data_failure(
    engine: AsyncEngine, statement: str, params: dict[str, object], code: str
) -> None:
    exc = await failure_of(engine, statement, **params)
    assert sqlstate(exc) == code
    assert classify(exc) is Failure.DATA
    assert code in reason(exc)


async def test_a_server_that_is_not_there_is_unavailable() -> None:
    engine = create_engine(f"postgresql://parley@127.0.0.1:{free_port()}/none", pool_size=1)
    try:
        exc = await failure_of(engine, "SELECT 1")
        assert classify(exc) is Failure.UNAVAILABLE
        with pytest.raises(DatabaseUnavailable):
            await MessageStore(engine=engine).append([incoming(1, uid())])
    finally:
        await engine.dispose()


async def test_a_terminated_connection_is_unavailable(engine: AsyncEngine) -> None:
    exc = await failure_of(engine, "SELECT pg_terminate_backend(pg_backend_pid())")
    assert classify(exc) is Failure.UNAVAILABLE


async def test_races_and_timeouts_are_transient(engine: AsyncEngine, directory: Directory) -> None:
    project = await directory.create_project(name="p")
    await directory.add_agent(project_id=project.id, email="a@p.test")
    duplicate = await failure_of(
        engine,
        "INSERT INTO agents (email, display_name) VALUES ('a@p.test', 'again')",
    )
    assert sqlstate(duplicate) == "23505" and classify(duplicate) is Failure.TRANSIENT

    timeout = await failure_of(engine, "SET LOCAL statement_timeout = 10", "SELECT pg_sleep(2)")
    assert sqlstate(timeout) == "57014" and classify(timeout) is Failure.TRANSIENT


async def test_a_deadlock_is_transient(engine: AsyncEngine) -> None:
    first_holds = asyncio.Event()
    second_holds = asyncio.Event()

    async def lock(mine: int, theirs: int, held: asyncio.Event, other: asyncio.Event) -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": mine})
            held.set()
            await other.wait()
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": theirs})

    async with asyncio.timeout(30):
        results = await asyncio.gather(
            lock(1, 2, first_holds, second_holds),
            lock(2, 1, second_holds, first_holds),
            return_exceptions=True,
        )
    [deadlock] = [r for r in results if isinstance(r, BaseException)]
    assert sqlstate(deadlock) == "40P01"
    assert classify(deadlock) is Failure.TRANSIENT


async def test_the_store_raises_data_rejected_with_the_reason(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    with pytest.raises(DataRejected, match="22021"):
        await MessageStore(engine=engine).append([incoming(project.id, uid(), "a\x00b")])

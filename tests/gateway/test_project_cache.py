"""Project lookups at connect are cached: bounded, with a TTL, stale while PostgreSQL is down."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from gateway.project_cache import LOOKUPS, MISSING_TTL, ProjectCache
from parley.embedded import EmbeddedPostgres
from parley.settings import Settings
from persistence.database import create_engine
from persistence.directory import Directory, Project
from persistence.errors import DatabaseUnavailable, NotFound
from persistence.schema import prepare
from tests import clients
from tests.factories import uid
from tests.servers import gateway_in_process


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Projects:
    """A directory that counts its lookups and can be made unavailable."""

    def __init__(self, *ids: int) -> None:
        self.projects = {i: Project(id=i, name=f"p{i}", allowed_origins=()) for i in ids}
        self.lookups = 0
        self.down = False
        self.delay = 0.0

    async def get_project(self, project_id: int) -> Project:
        self.lookups += 1
        await asyncio.sleep(self.delay)
        if self.down:
            raise DatabaseUnavailable("down")
        if project_id not in self.projects:
            raise NotFound(f"project {project_id} does not exist")
        return self.projects[project_id]


async def test_a_fresh_entry_answers_without_a_lookup_until_its_ttl() -> None:
    source, clock = Projects(1), Clock()
    cache = ProjectCache(directory=source, ttl=30.0, clock=clock)
    for _ in range(100):
        assert (await cache.get(1)).id == 1
    assert source.lookups == 1
    clock.now = 31.0
    source.projects[1] = Project(id=1, name="renamed", allowed_origins=())
    assert (await cache.get(1)).name == "renamed"
    assert source.lookups == 2


async def test_a_burst_of_connects_shares_one_lookup() -> None:
    source = Projects(1)
    source.delay = 0.05
    cache = ProjectCache(directory=source, clock=Clock())
    found = await asyncio.gather(*(cache.get(1) for _ in range(50)))
    assert {p.id for p in found} == {1} and source.lookups == 1
    source.down = True
    results = await asyncio.gather(*(cache.get(2) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, DatabaseUnavailable) for r in results) and source.lookups == 2


async def test_unknown_ids_are_remembered_briefly() -> None:
    source, clock = Projects(), Clock()
    cache = ProjectCache(directory=source, clock=clock)
    for _ in range(50):
        with pytest.raises(NotFound):
            await cache.get(404)
    assert source.lookups == 1
    clock.now = MISSING_TTL + 1
    with pytest.raises(NotFound):
        await cache.get(404)
    assert source.lookups == 2


async def test_the_cache_is_bounded_least_recently_used_first() -> None:
    source = Projects(*range(1, 11))
    cache = ProjectCache(directory=source, size=3, clock=Clock())
    for project_id in (1, 2, 3, 1, 4):
        await cache.get(project_id)
    assert len(cache) == 3
    lookups = source.lookups
    await cache.get(1)  # kept: used recently
    assert source.lookups == lookups
    await cache.get(2)  # evicted
    assert source.lookups == lookups + 1


async def test_stale_entries_answer_while_the_database_is_down_then_give_up() -> None:
    source, clock = Projects(1), Clock()
    cache = ProjectCache(directory=source, ttl=30.0, max_stale=600.0, clock=clock)
    await cache.get(1)
    source.down = True
    clock.now = 300.0
    assert (await cache.get(1)).id == 1
    with pytest.raises(DatabaseUnavailable):
        await cache.get(2)  # never seen: nothing to answer with
    clock.now = 700.0
    with pytest.raises(DatabaseUnavailable):
        await cache.get(1)


async def test_widgets_connect_and_send_while_postgres_is_stopped(
    settings: Settings, tmp_path: Path
) -> None:
    """Issue 6 item 6: connect needs no query for a project this gateway has seen."""
    postgres = EmbeddedPostgres(workdir=tmp_path / "postgres")
    postgres.start()
    try:
        database_url = postgres.url.rsplit("/", 1)[0] + "/parley"
        await asyncio.to_thread(prepare, database_url)
        engine = create_engine(database_url, pool_size=1)
        project = await Directory(engine=engine).create_project(name="Acme")
        await engine.dispose()
        own = settings.replace(database_url=database_url)
        async with gateway_in_process(own) as url:
            await (await clients.visitor(url, project.id, uid())).close()  # the gateway sees it
            postgres.stop()
            visitors = [uid() for _ in range(3)]
            for visitor in visitors:
                tab = await clients.visitor(url, project.id, visitor, identify=False)
                ack = await tab.call("sendMessage", {"content": "hi", "tempId": str(uuid.uuid4())})
                assert ack == {"ok": True}
                await tab.close()
            # A project it never saw cannot be vouched for: a clear, retryable refusal.
            error = await clients.refused(
                url, auth={"projectId": project.id + 1, "visitorUid": uid()}
            )
            assert error["code"] == "unavailable"
    finally:
        postgres.stop()
    consumer = AIOKafkaConsumer(
        own.visitor_topic,
        bootstrap_servers=own.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    try:
        keys: set[bytes] = set()
        async with asyncio.timeout(20):
            while len(keys) < len(visitors):
                record = await consumer.getone()
                assert record.key is not None
                keys.add(record.key)
    finally:
        await consumer.stop()
    assert keys == {f"{project.id}:{v}".encode() for v in visitors}


async def test_a_connect_burst_costs_the_database_one_lookup(
    gateway_url: str, project: Project, agent_token: str
) -> None:
    fetched = LOOKUPS.labels("fetched")
    before = fetched._value.get()
    tabs = await asyncio.gather(
        *(clients.visitor(gateway_url, project.id, uid(), identify=False) for _ in range(40))
    )
    assert fetched._value.get() - before == 1
    async with httpx.AsyncClient(base_url=gateway_url, timeout=15) as http:
        response = await http.get(
            f"/api/projects/{project.id}/conversations",
            headers={"Authorization": f"Bearer {agent_token}"},
        )
        assert response.status_code == 200
    for tab in tabs:
        await tab.close()

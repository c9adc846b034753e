"""Dependencies going away while messages flow: nothing accepted is lost."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from gateway.tokens import TokenSigner
from parley.embedded import EmbeddedPostgres, free_port
from parley.settings import Settings
from persistence.database import create_engine
from persistence.directory import Directory
from persistence.schema import prepare
from tests import clients
from tests.factories import project_with_agent, uid
from tests.servers import Cluster, create_topics, metric

pytestmark = pytest.mark.e2e

RETRIES = 2  # failed attempts the worker must count while PostgreSQL is down
RETRIED = 'parley_agent_retries_total{kind="unavailable"}'


async def worker_retries(port: int, *, at_least: int, timeout: float = 30) -> float:
    """The worker's retries through an outage, once there are ``at_least``."""
    deadline = time.monotonic() + timeout
    while (count := await metric(port, RETRIED)) < at_least:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker counted {count} retries in {timeout} s, not {at_least}")
        await asyncio.sleep(0.1)
    return count


async def test_messages_sent_while_postgres_is_down_are_stored_after_it_returns(
    e2e_settings: Settings, tmp_path: Path
) -> None:
    postgres = EmbeddedPostgres(workdir=tmp_path / "postgres")
    postgres.start()
    database_url = postgres.url.rsplit("/", 1)[0] + "/parley"
    settings = e2e_settings.replace(database_url=database_url)
    cluster = Cluster(settings, tmp_path)
    try:
        await asyncio.to_thread(prepare, database_url)
        engine = create_engine(database_url, pool_size=1)
        directory = Directory(engine=engine)
        project, agent = await project_with_agent(directory, email="a@acme.test")
        await engine.dispose()
        await create_topics(settings)
        metrics_port = free_port()
        await cluster.worker(PARLEY_WORKER_METRICS_PORT=str(metrics_port))
        await cluster.relay()
        url = await cluster.gateway()
        token = TokenSigner(secret=settings.secret, ttl=3600).issue(agent.id)
        dash = await clients.dashboard(url, token, project.id)
        tab = await clients.visitor(url, project.id, uid())
        assert (await tab.call("sendMessage", {"content": "before", "tempId": str(uuid.uuid4())}))[
            "ok"
        ]
        await dash.wait_for("newMessage", 1)

        assert await metric(metrics_port, RETRIED) == 0
        postgres.stop()
        for i in range(5):
            ack = await tab.call(
                "sendMessage", {"content": f"during {i}", "tempId": str(uuid.uuid4())}
            )
            assert ack == {"ok": True}  # the broker holds them
        # PostgreSQL stays down until the worker has tried to store them, failed, and
        # retried: the outage this test is about, not a restart it might sleep through.
        await worker_retries(metrics_port, at_least=RETRIES)
        postgres.start()

        received = await dash.wait_for("newMessage", 6, timeout=60)
        assert [m["content"] for m in received] == ["before"] + [f"during {i}" for i in range(5)]
        assert [m["seq"] for m in received] == list(range(1, 7))
        await dash.close()
        await tab.close()
    finally:
        cluster.stop()
        postgres.stop()

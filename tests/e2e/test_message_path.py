"""Visitor socket → topic → Faust agent → PostgreSQL + outbox → relay → Redis → dashboards.

Every process runs as a child process against the real services.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid

import asyncpg
import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.tokens import TokenSigner
from parley.embedded import free_port
from persistence.directory import Directory
from persistence.models import messages, outbox
from persistence.outbox import OUTBOX_CHANNEL, Outbox
from persistence.store import MessageStore
from streams.events import VisitorMessage
from tests import clients
from tests.factories import incoming, project_with_agent, uid
from tests.servers import Cluster, metric

pytestmark = pytest.mark.e2e

SETTLE = 1.5  # seconds to wait for any stray duplicate after the expected events


def send(content: str) -> dict[str, str]:
    return {"content": content, "tempId": str(uuid.uuid4())}


def ids(events: list[dict]) -> list[int]:
    return [event["id"] for event in events]


async def test_two_gateways_deliver_each_message_exactly_once(
    cluster: Cluster, directory: Directory, signer: TokenSigner
) -> None:
    project = await directory.create_project(name="Acme")
    agents = [
        await directory.add_agent(project_id=project.id, email=f"a{i}@acme.test") for i in range(2)
    ]
    gateway_a, gateway_b = await cluster.start_path("gateway-a", "gateway-b")

    dash_a = await clients.dashboard(gateway_a, signer.issue(agents[0].id), project.id)
    dash_b = await clients.dashboard(gateway_b, signer.issue(agents[1].id), project.id)
    visitor_uid = uid()
    tab_a = await clients.visitor(gateway_a, project.id, visitor_uid)
    tab_b = await clients.visitor(gateway_b, project.id, visitor_uid)

    for i in range(10):
        assert (await tab_a.call("sendMessage", send(f"hello {i}")))["ok"] is True

    for recorder in (dash_a, dash_b):
        await recorder.wait_for("newMessage", 10)
    for tab in (tab_a, tab_b):
        await tab.wait_for("messageSent", 10)
    await asyncio.sleep(SETTLE)

    for recorder in (dash_a, dash_b):
        received = recorder.payloads("newMessage")
        assert [m["seq"] for m in received] == list(range(1, 11))
        assert [m["content"] for m in received] == [f"hello {i}" for i in range(10)]
        assert len(set(ids(received))) == 10
    for tab in (tab_a, tab_b):
        acks = tab.payloads("messageSent")
        assert len(acks) == 10
        assert [a["finalMessage"]["seq"] for a in acks] == list(range(1, 11))
        assert all(a["tempId"] == a["finalMessage"]["tempId"] for a in acks)
    message = dash_a.payloads("newMessage")[0]
    assert set(message) == {
        "id",
        "conversationId",
        "projectId",
        "visitorUid",
        "seq",
        "content",
        "fromCustomer",
        "senderType",
        "status",
        "tempId",
        "createdAt",
    }
    assert message["fromCustomer"] is True and message["senderType"] == "visitor"
    assert message["status"] == "sent" and message["visitorUid"] == visitor_uid
    for recorder in (dash_a, dash_b, tab_a, tab_b):
        await recorder.close()


async def test_one_hundred_messages_arrive_in_order(
    cluster: Cluster, directory: Directory, signer: TokenSigner
) -> None:
    project, agent = await project_with_agent(directory, email="a@acme.test")
    [url] = await cluster.start_path()
    dash = await clients.dashboard(url, signer.issue(agent.id), project.id)
    tab = await clients.visitor(url, project.id, uid())

    # Fire all 100 without waiting for each ack: the socket's order must still hold.
    acks = await asyncio.gather(*(tab.call("sendMessage", send(f"m{i:03}")) for i in range(100)))
    assert all(ack["ok"] for ack in acks)

    received = await dash.wait_for("newMessage", 100, timeout=60)
    await asyncio.sleep(SETTLE)
    received = dash.payloads("newMessage")
    assert [m["seq"] for m in received] == list(range(1, 101))
    assert [m["content"] for m in received] == [f"m{i:03}" for i in range(100)]
    await dash.close()
    await tab.close()


CRASH_ATTEMPTS = 3  # a kill can land after the offset commit (every 0.5 s); try again


async def shown_until(dash: clients.Recorder, content: str, timeout: float = 60) -> list[dict]:
    """Every newMessage received, once one with ``content`` arrived."""
    deadline = time.monotonic() + timeout
    while not any(m["content"] == content for m in dash.payloads("newMessage")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{content!r} never arrived: {dash.payloads('newMessage')}")
        await asyncio.sleep(0.05)
    return dash.payloads("newMessage")


async def test_an_event_redelivered_after_a_worker_crash_is_stored_and_shown_once(
    cluster: Cluster, directory: Directory, signer: TokenSigner, engine: AsyncEngine
) -> None:
    project, agent = await project_with_agent(directory, email="a@acme.test")
    metrics_port = free_port()
    worker = await cluster.worker(PARLEY_WORKER_METRICS_PORT=str(metrics_port))
    await cluster.relay()
    url = await cluster.gateway()
    dash = await clients.dashboard(url, signer.issue(agent.id), project.id)
    settings = cluster.settings
    assert settings.database_url
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    listener = await asyncpg.connect(settings.database_url)
    crashed = asyncio.Event()

    def crash(*_: object) -> None:
        # NOTIFY arrives at the storing transaction's commit: kill the worker before
        # its next offset commit, so the restarted worker consumes the event again.
        if not crashed.is_set() and worker.process is not None:
            os.killpg(worker.process.pid, signal.SIGKILL)
            crashed.set()

    await producer.start()
    await listener.add_listener(OUTBOX_CHANNEL, crash)
    try:
        for attempt in range(CRASH_ATTEMPTS):
            visitor = uid()
            event = VisitorMessage(
                project_id=project.id,
                visitor_uid=visitor,
                temp_id=str(uuid.uuid4()),
                content=f"twice {attempt}",
            )
            crashed.clear()
            await producer.send_and_wait(
                settings.visitor_topic, value=event.to_json(), key=event.key, headers=event.headers
            )
            async with asyncio.timeout(30):
                await crashed.wait()
            await asyncio.to_thread(worker.process.wait)  # type: ignore[union-attr]
            restarted_at = len(worker.output())
            worker.start()
            await worker.wait_for_output("[^Worker]: Ready", since=restarted_at)
            # The same visitor's next message shares the partition, so it is stored after
            # the redelivered one: once it is shown, the redelivery has been handled.
            after = VisitorMessage(
                project_id=project.id,
                visitor_uid=visitor,
                temp_id=str(uuid.uuid4()),
                content=f"after {attempt}",
            )
            crashed.set()  # no more kills
            await producer.send_and_wait(
                settings.visitor_topic, value=after.to_json(), key=after.key, headers=after.headers
            )
            shown = await shown_until(dash, f"after {attempt}")
            mine = [m for m in shown if m["visitorUid"] == visitor]
            assert [m["content"] for m in mine] == [f"twice {attempt}", f"after {attempt}"]
            assert [m["seq"] for m in mine] == [1, 2]
            if await metric(metrics_port, "parley_agent_duplicates_total") >= 1:
                break  # the restarted worker consumed the event again and stored nothing
        else:
            raise AssertionError(f"no crash in {CRASH_ATTEMPTS} landed before the offset commit")
    finally:
        await listener.close()
        await producer.stop()
    async with engine.connect() as conn:
        stored = (await conn.execute(sa.select(messages.c.temp_id))).scalars().all()
    assert len(stored) == len(set(stored)) == 2 * (attempt + 1)
    assert len(set(ids(dash.payloads("newMessage")))) == len(dash.payloads("newMessage"))
    await dash.close()


RELAY_BATCH = 1_000  # rows the first relay claims: publishing them outlasts the kill


async def drain(pubsub: aioredis.client.PubSub, *, quiet: float = 1.0) -> list[int]:
    """Event ids of everything published until the channel is quiet for ``quiet`` s."""
    seen = []
    while message := await pubsub.get_message(ignore_subscribe_messages=True, timeout=quiet):
        seen.append(json.loads(message["data"])["eventId"])
    return seen


async def test_relay_killed_between_publish_and_delete_republishes_and_shows_once(
    cluster: Cluster, directory: Directory, signer: TokenSigner, engine: AsyncEngine
) -> None:
    project, agent = await project_with_agent(directory, email="a@acme.test")
    url = await cluster.gateway()
    dash = await clients.dashboard(url, signer.issue(agent.id), project.id)
    total = 1_200
    visitors = [uid() for _ in range(3)]
    store = MessageStore(engine=engine)
    for i in range(total // len(visitors)):
        await store.append([incoming(project.id, v, f"{v}:{i}") for v in visitors])

    settings = cluster.settings
    assert settings.redis_url
    watcher = aioredis.Redis.from_url(settings.redis_url)
    pubsub = watcher.pubsub()
    await pubsub.subscribe(settings.events_channel)
    relay = await cluster.relay("relay-1", PARLEY_RELAY_BATCH_SIZE=str(RELAY_BATCH))
    # SIGKILL as soon as the first event of the batch reaches Redis: the relay publishes
    # the whole batch, then deletes it in the same transaction.
    first = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30)
    while first is None:
        first = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30)
    assert relay.process is not None
    os.killpg(relay.process.pid, signal.SIGKILL)
    relay.process.wait()
    published_before = {json.loads(first["data"])["eventId"], *await drain(pubsub)}
    async with engine.connect() as conn:
        pending = set((await conn.execute(sa.select(outbox.c.id))).scalars())
    in_limbo = published_before & pending
    # The crash landed between publish and delete: Redis has these, the outbox kept them.
    assert in_limbo, "the kill landed after the batch committed"

    await cluster.relay("relay-2")
    received = await dash.wait_for("newMessage", total, timeout=60)
    republished = await drain(pubsub)
    await pubsub.aclose()
    await watcher.aclose()
    # The second relay published them again, and the gateway showed each message once.
    assert in_limbo <= set(republished)
    # A repeat would have arrived before the last message of its conversation.
    assert len(received) == total
    assert len(set(ids(received))) == total
    by_visitor: dict[str, list[int]] = {}
    for message in received:
        by_visitor.setdefault(message["visitorUid"], []).append(message["seq"])
    assert all(seqs == list(range(1, 401)) for seqs in by_visitor.values())
    assert await Outbox(engine=engine).pending() == 0
    await dash.close()


async def test_a_project_never_sees_another_projects_messages(
    cluster: Cluster, directory: Directory, signer: TokenSigner
) -> None:
    project_a = await directory.create_project(name="A")
    project_b = await directory.create_project(name="B")
    agent_a = await directory.add_agent(project_id=project_a.id, email="a@a.test")
    agent_b = await directory.add_agent(project_id=project_b.id, email="b@b.test")
    [url] = await cluster.start_path()
    dash_a = await clients.dashboard(url, signer.issue(agent_a.id), project_a.id)
    dash_b = await clients.dashboard(url, signer.issue(agent_b.id), project_b.id)
    assert (await dash_b.call("joinProjectRoom", {"projectId": project_a.id}))["status"] == "error"
    tab_a = await clients.visitor(url, project_a.id, uid())
    tab_b = await clients.visitor(url, project_b.id, uid())

    for i in range(3):
        assert (await tab_a.call("sendMessage", send(f"for A {i}")))["ok"]
    assert (await tab_b.call("sendMessage", send("for B")))["ok"]
    await dash_a.wait_for("newMessage", 3)
    await dash_b.wait_for("newMessage", 1)
    await asyncio.sleep(SETTLE)

    assert {m["projectId"] for m in dash_a.payloads("newMessage")} == {project_a.id}
    assert [m["content"] for m in dash_b.payloads("newMessage")] == ["for B"]
    assert tab_b.payloads("messageSent")[0]["finalMessage"]["content"] == "for B"
    assert len(tab_a.payloads("messageSent")) == 3
    for recorder in (dash_a, dash_b, tab_a, tab_b):
        await recorder.close()


async def test_unknown_project_events_go_to_the_dead_letter_topic(
    cluster: Cluster, engine: AsyncEngine
) -> None:
    """A value no gateway would produce must not stall or crash the agent."""
    await cluster.worker()
    settings = cluster.settings
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.visitor_topic, value=b"{not json", key=b"x")
        bogus = VisitorMessage(
            project_id=99999, visitor_uid="v", temp_id=str(uuid.uuid4()), content="?"
        )
        await producer.send_and_wait(settings.visitor_topic, value=bogus.to_json(), key=bogus.key)
    finally:
        await producer.stop()

    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        settings.dead_letter_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    try:
        records = []
        async with asyncio.timeout(30):
            while len(records) < 2:
                records.append(await consumer.getone())
    finally:
        await consumer.stop()
    reasons = sorted(dict(r.headers)["error"].decode() for r in records)
    assert reasons[0].startswith("not JSON")
    assert reasons[1] == "project 99999 does not exist"
    assert json.loads(records[1].value if b"99999" in records[1].value else records[0].value)

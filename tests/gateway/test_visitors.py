"""Visitor sockets against a real gateway, PostgreSQL, Redis and broker."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.embedded import EmbeddedBroker
from parley.settings import Settings
from persistence.directory import Directory, Project
from persistence.store import MessageStore
from tests import clients
from tests.factories import incoming, uid
from tests.servers import gateway_in_process


def message(content: object = "hello", **extra: object) -> dict[str, object]:
    return {"content": content, "tempId": str(uuid.uuid4()), **extra}


async def test_unknown_project_is_refused(gateway_url: str) -> None:
    error = await clients.refused(gateway_url, auth={"projectId": 987654, "visitorUid": uid()})
    assert error["code"] == "forbidden"
    assert "does not exist" in error["message"]


async def test_malformed_project_id_is_refused(gateway_url: str) -> None:
    error = await clients.refused(gateway_url, auth={"projectId": "abc", "visitorUid": uid()})
    assert error["code"] == "invalid_payload"


async def test_origin_must_be_on_the_projects_list(gateway_url: str, directory: Directory) -> None:
    locked = await directory.create_project(name="locked", origins=["https://shop.example"])
    error = await clients.refused(
        gateway_url,
        auth={"projectId": locked.id, "visitorUid": uid()},
        headers={"Origin": "https://evil.example"},
    )
    assert error["code"] == "forbidden" and "origin" in error["message"]
    ok = await clients.visitor(
        gateway_url, locked.id, uid(), headers={"Origin": "https://shop.example"}
    )
    await ok.close()


async def test_project_id_in_the_query_string_is_accepted(
    gateway_url: str, project: Project
) -> None:
    client = clients.Recorder(
        clients.socketio.AsyncClient(reconnection=False), ["conversationHistory"]
    )
    await client.client.connect(
        f"{gateway_url}?projectId={project.id}",
        transports=["websocket"],
        wait_timeout=clients.CONNECT_WAIT,
    )
    visitor_uid = uid()
    ack = await client.call("identify", {"projectId": project.id, "visitorUid": visitor_uid})
    assert ack == {"ok": True}
    assert await client.wait_for("conversationHistory", 1) == [{"messages": []}]
    await client.close()


async def test_identify_returns_the_last_50_messages_oldest_first(
    gateway_url: str, project: Project, engine: AsyncEngine
) -> None:
    visitor_uid = uid()
    await MessageStore(engine=engine).append(
        [incoming(project.id, visitor_uid, f"m{i}") for i in range(1, 56)]
    )
    client = await clients.visitor(gateway_url, project.id, visitor_uid)
    [history] = client.payloads("conversationHistory")
    assert [m["seq"] for m in history["messages"]] == list(range(6, 56))
    assert history["messages"][0]["content"] == "m6"
    await client.close()


async def test_send_before_identify_is_rejected(gateway_url: str, project: Project) -> None:
    client = await clients.visitor(gateway_url, project.id, None)
    ack = await client.call("sendMessage", message())
    assert ack["ok"] is False and ack["error"]["code"] == "not_identified"
    await client.close()


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("just a string", "payload must be an object"),
        ({"tempId": str(uuid.uuid4())}, "content must be a string"),
        (message(content=42), "content must be a string"),
        (message(content="   "), "content is empty"),
        (message(content="x" * 5001), "longer than 5000"),
        ({"content": "hi", "tempId": "not-a-uuid"}, "tempId"),
        ({"content": "hi", "tempId": 7}, "tempId"),
        (message(sessionMetadata="x"), "sessionMetadata must be an object"),
        (message(sessionMetadata={"urlHistory": [{"url": "/"}] * 51}), "more than 50"),
        (message(sessionMetadata={"urlHistory": ["x"]}), "entries must be objects"),
        (message(sessionMetadata={"referrer": 5}), "referrer must be a string"),
    ],
)
async def test_invalid_messages_get_a_clear_error(
    gateway_url: str, project: Project, payload: object, fragment: str
) -> None:
    client = await clients.visitor(gateway_url, project.id, uid())
    ack = await client.call("sendMessage", payload)
    assert ack["ok"] is False
    assert ack["error"]["code"] == "invalid_payload"
    assert fragment in ack["error"]["message"]
    # The socket still works after a rejection.
    assert (await client.call("sendMessage", message()))["ok"] is True
    await client.close()


async def test_content_is_trimmed_and_5000_characters_are_accepted(
    gateway_url: str, project: Project
) -> None:
    client = await clients.visitor(gateway_url, project.id, uid())
    ack = await client.call("sendMessage", message(content="  " + "y" * 5000 + "\n"))
    assert ack["ok"] is True
    await client.close()


async def test_rate_limit_answers_with_retry_after(settings: Settings, project: Project) -> None:
    limited = settings.replace(rate_limit_count=3, rate_limit_window=60.0)
    async with gateway_in_process(limited) as url:
        client = await clients.visitor(url, project.id, uid())
        for _ in range(3):
            assert (await client.call("sendMessage", message()))["ok"] is True
        ack = await client.call("sendMessage", message())
        assert ack["ok"] is False
        assert ack["error"]["code"] == "rate_limited"
        assert 0 < ack["error"]["retryAfter"] <= 60
        other = await clients.visitor(url, project.id, uid())
        assert (await other.call("sendMessage", message()))["ok"] is True
        await client.close()
        await other.close()


async def test_accepted_message_is_on_the_topic_as_plain_json(
    gateway_url: str, project: Project, settings: Settings
) -> None:
    visitor_uid = uid()
    client = await clients.visitor(gateway_url, project.id, visitor_uid)
    sent = message(
        content="Where is my order?",
        sessionMetadata={
            "referrer": "https://search.example",
            "landingPage": "/orders",
            "urlHistory": [{"url": "/orders", "title": "Orders", "timestamp": 1700000000}],
        },
    )
    assert await client.call("sendMessage", sent) == {"ok": True}
    await client.close()

    consumer = AIOKafkaConsumer(
        settings.visitor_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert record.key == f"{project.id}:{visitor_uid}".encode()
    headers = dict(record.headers)
    assert headers["event-type"] == b"visitor.message"
    body = json.loads(record.value)
    assert body["eventId"] == headers["event-id"].decode()
    assert body["content"] == "Where is my order?"
    assert body["tempId"] == sent["tempId"]
    assert body["sessionMetadata"]["urlHistory"][0]["title"] == "Orders"


async def test_dead_broker_gives_a_clear_error_and_the_gateway_lives_on(
    settings: Settings, project: Project, tmp_path: Path
) -> None:
    broker = EmbeddedBroker(workdir=tmp_path / "broker")
    broker.start()
    own = settings.replace(kafka_bootstrap_servers=broker.url)
    try:
        async with gateway_in_process(own) as url:
            visitor_uid = uid()
            client = await clients.visitor(url, project.id, visitor_uid)
            assert (await client.call("sendMessage", message()))["ok"] is True
            broker.kill()
            ack = await client.call("sendMessage", message(), timeout=30)
            assert ack["ok"] is False
            assert ack["error"]["code"] == "unavailable"
            assert "retry" in ack["error"]["message"]
            # Still serving: history works while the broker is down.
            hello = {"projectId": project.id, "visitorUid": visitor_uid}
            assert await client.call("identify", hello) == {"ok": True}
            await client.close()
    finally:
        broker.stop()

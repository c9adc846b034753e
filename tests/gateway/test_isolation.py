"""Isolation: an agent of project B reaches nothing of project A; a visitor only itself."""

from __future__ import annotations

import json
import uuid

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.tokens import TokenSigner
from parley.settings import Settings
from persistence.directory import Directory, Project
from persistence.models import conversations
from persistence.store import MessageStore
from tests import clients
from tests.factories import incoming, uid
from tests.gateway.ephemeral import only, wait_for_subscribers


async def test_an_agent_of_b_is_refused_on_every_route_and_event_of_a(
    gateway_url: str,
    settings: Settings,
    engine: AsyncEngine,
    directory: Directory,
    signer: TokenSigner,
) -> None:
    a = await directory.create_project(name="A")
    b = await directory.create_project(name="B")
    ada = await directory.add_agent(project_id=a.id, email="ada@a.test")
    eve = await directory.add_agent(project_id=b.id, email="eve@b.test")
    visitor = uid()
    stored = await MessageStore(engine=engine).append([incoming(a.id, visitor, "secret")])
    conversation = stored.stored[0]["conversationId"]
    reply = {"content": "hi", "tempId": str(uuid.uuid4())}
    base = f"/api/projects/{a.id}"
    token = signer.issue(eve.id)
    async with httpx.AsyncClient(
        base_url=gateway_url, headers={"Authorization": f"Bearer {token}"}, timeout=15
    ) as http:
        calls = [
            http.get(f"{base}/conversations"),
            http.get(f"{base}/conversations/{conversation}/messages"),
            http.patch(f"{base}/conversations/{conversation}", json={"read": True}),
            http.get(f"{base}/visitors/{visitor}"),
            http.get(f"{base}/sync"),
            http.post(f"{base}/conversations/{conversation}/messages", json=reply),
        ]
        for call in calls:
            response = await call
            assert response.status_code == 403, (response.request.url, response.text)
            body = response.json()
            code = body["error"]["code"]
            assert code == "forbidden", body
        # Through its own project's paths, A's conversation does not exist.
        own = f"/api/projects/{b.id}/conversations/{conversation}"
        for response in (
            await http.get(f"{own}/messages"),
            await http.patch(own, json={"read": True}),
            await http.post(f"{own}/messages", json=reply),
        ):
            assert response.status_code == 404, response.text

    await wait_for_subscribers(settings, 1)
    dash = await clients.dashboard(gateway_url, token)
    member = await clients.dashboard(gateway_url, signer.issue(ada.id), a.id)
    joined = await dash.call("joinProjectRoom", {"projectId": a.id})
    assert joined["status"] == "error" and joined["message"] == "Forbidden"
    for event, payload in (
        ("sync", {"projectId": a.id}),
        ("sendReply", {"conversationId": conversation, **reply}),
        ("agentTyping", {"conversationId": conversation, "isTyping": True}),
    ):
        ack = await dash.call(event, payload)
        assert ack["ok"] is False and ack["error"]["code"] == "forbidden", (event, ack)
    # Visitor events of A reach A's agents only.
    tab = await clients.visitor(gateway_url, a.id, visitor)
    assert await tab.call("visitorIsTyping", {"isTyping": True}) == {"ok": True}
    await only(member, "visitorIsTyping", 1)
    await only(dash, "visitorIsTyping", 0)
    for client in (dash, member, tab):
        await client.close()


async def test_a_visitor_cannot_reach_another_visitors_conversation(
    gateway_url: str, project: Project, engine: AsyncEngine, settings: Settings
) -> None:
    victim, attacker = uid(), uid()
    stored = await MessageStore(engine=engine).append([incoming(project.id, victim, "private")])
    conversation = stored.stored[0]["conversationId"]
    tab = await clients.visitor(gateway_url, project.id, attacker)
    assert tab.payloads("conversationHistory") == [{"messages": []}]
    ack = await tab.call("identify", {"projectId": project.id, "visitorUid": victim})
    assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
    assert len(tab.payloads("conversationHistory")) == 1  # nothing of the victim's was sent
    # Naming the victim or the conversation in a message changes nothing: the socket's uid counts.
    sneaky = {
        "content": "as you",
        "tempId": str(uuid.uuid4()),
        "visitorUid": victim,
        "conversationId": conversation,
    }
    ack = await tab.call("sendMessage", sneaky)
    if ack["ok"]:
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
        assert record.key == f"{project.id}:{attacker}".encode()
        assert json.loads(record.value)["visitorUid"] == attacker
    else:
        assert ack["error"]["code"] == "invalid_payload"
    # Receipts move the attacker's own (absent) conversation, never the victim's.
    assert await tab.call("markRead", {"upToSeq": 1}) == {"ok": True}
    async with engine.connect() as conn:
        read_seq = await conn.scalar(
            sa.select(conversations.c.visitor_read_seq).where(conversations.c.id == conversation)
        )
    assert read_seq == 0
    history = await clients.visitor(gateway_url, project.id, victim)
    [seen] = history.payloads("conversationHistory")
    assert [m["content"] for m in seen["messages"]] == ["private"]
    await tab.close()
    await history.close()

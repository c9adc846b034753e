"""Agents answer through the same pipeline; receipts and context travel the outbox too."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from gateway.tokens import TokenSigner
from persistence.directory import Directory
from tests import clients
from tests.factories import project_with_agent, uid
from tests.servers import Cluster

pytestmark = pytest.mark.e2e

SETTLE = 1.5  # seconds to wait for any stray duplicate after the expected events


def text(content: str) -> dict[str, str]:
    return {"content": content, "tempId": str(uuid.uuid4())}


async def test_a_reply_reaches_both_tabs_once_and_acks_the_agent(
    cluster: Cluster, directory: Directory, signer: TokenSigner
) -> None:
    project = await directory.create_project(name="Acme")
    agent = await directory.add_agent(
        project_id=project.id, email="ada@acme.test", display_name="Ada"
    )
    other = await directory.add_agent(project_id=project.id, email="bob@acme.test")
    gateway_a, gateway_b = await cluster.start_path("gateway-a", "gateway-b")
    visitor_uid = uid()
    tab_a = await clients.visitor(gateway_a, project.id, visitor_uid)
    tab_b = await clients.visitor(gateway_b, project.id, visitor_uid)
    stranger = await clients.visitor(gateway_a, project.id, uid())
    dash = await clients.dashboard(gateway_a, signer.issue(agent.id), project.id)
    colleague = await clients.dashboard(gateway_b, signer.issue(other.id), project.id)

    assert (await tab_a.call("sendMessage", text("hello?")))["ok"]
    [first] = await dash.wait_for("newMessage", 1)
    reply = text("Hi, Ada here")
    ack = await dash.call("sendReply", {"conversationId": first["conversationId"], **reply})
    assert ack == {"ok": True}

    for tab in (tab_a, tab_b):
        [answer] = await tab.wait_for("agentReplied", 1)
        assert answer["content"] == "Hi, Ada here" and answer["seq"] == 2
        assert answer["senderType"] == "agent" and answer["fromCustomer"] is False
        assert answer["agentId"] == agent.id and answer["agentName"] == "Ada"
    [own] = await dash.wait_for("messageSent", 1)
    assert own["tempId"] == reply["tempId"] and own["finalMessage"]["seq"] == 2
    await colleague.wait_for("newMessage", 2)
    await asyncio.sleep(SETTLE)
    assert len(tab_a.payloads("agentReplied")) == 1 and len(tab_b.payloads("agentReplied")) == 1
    assert stranger.payloads("agentReplied") == []
    assert colleague.payloads("messageSent") == []  # the ack is the sender's alone
    assert [m["seq"] for m in colleague.payloads("newMessage")] == [1, 2]

    # The same reply over HTTP: 201 with the stored message.
    async with httpx.AsyncClient(base_url=gateway_b, timeout=15) as http:
        response = await http.post(
            f"/api/projects/{project.id}/conversations/{first['conversationId']}/messages",
            json=text("and over HTTP"),
            headers={"Authorization": f"Bearer {signer.issue(other.id)}"},
        )
        assert response.status_code == 201, response.text
        stored = response.json()
        assert stored["seq"] == 3 and stored["agentId"] == other.id
        bad = await http.post(
            f"/api/projects/{project.id}/conversations/{first['conversationId']}/messages",
            json={"content": "", "tempId": "x"},
            headers={"Authorization": f"Bearer {signer.issue(other.id)}"},
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "invalid_payload"
    await tab_b.wait_for("agentReplied", 2)
    for recorder in (tab_a, tab_b, stranger, dash, colleague):
        await recorder.close()


async def test_replies_are_checked_like_visitor_messages(
    cluster: Cluster, directory: Directory, signer: TokenSigner
) -> None:
    project = await directory.create_project(name="Acme")
    elsewhere = await directory.create_project(name="Other")
    agent = await directory.add_agent(project_id=project.id, email="ada@acme.test")
    outsider = await directory.add_agent(project_id=elsewhere.id, email="eve@other.test")
    [url] = await cluster.start_path()
    tab = await clients.visitor(url, project.id, uid())
    dash = await clients.dashboard(url, signer.issue(agent.id), project.id)
    assert (await tab.call("sendMessage", text("hello?")))["ok"]
    [first] = await dash.wait_for("newMessage", 1)
    conversation = first["conversationId"]

    cases = [
        (
            {"conversationId": conversation, "content": " ", "tempId": str(uuid.uuid4())},
            "invalid_payload",
        ),
        ({"conversationId": "x", **text("hi")}, "invalid_payload"),
        ({"conversationId": 999999, **text("hi")}, "not_found"),
        ("nope", "invalid_payload"),
    ]
    for payload, code in cases:
        ack = await dash.call("sendReply", payload)
        assert ack["ok"] is False and ack["error"]["code"] == code, payload
    eve = await clients.dashboard(url, signer.issue(outsider.id))
    ack = await eve.call("sendReply", {"conversationId": conversation, **text("hi")})
    assert ack["error"]["code"] == "forbidden"
    ack = await tab.call("sendReply", {"conversationId": conversation, **text("hi")})
    assert ack["error"]["code"] == "forbidden"
    for recorder in (tab, dash, eve):
        await recorder.close()


async def test_a_reconnecting_widget_gets_exactly_the_replies_it_missed(
    cluster: Cluster, directory: Directory, signer: TokenSigner
) -> None:
    project, agent = await project_with_agent(directory)
    [url] = await cluster.start_path()
    visitor_uid = uid()
    tab = await clients.visitor(url, project.id, visitor_uid)
    dash = await clients.dashboard(url, signer.issue(agent.id), project.id)
    assert (await tab.call("sendMessage", text("hello?")))["ok"]
    [first] = await dash.wait_for("newMessage", 1)
    conversation = first["conversationId"]
    await dash.call("sendReply", {"conversationId": conversation, **text("reply 1")})
    [seen] = await tab.wait_for("agentReplied", 1)
    await tab.close()  # the widget goes offline

    for i in range(2, 5):
        assert (
            await dash.call("sendReply", {"conversationId": conversation, **text(f"reply {i}")})
        )["ok"]
    await dash.wait_for("newMessage", 5)

    back = await clients.visitor(url, project.id, visitor_uid, last_seq=seen["seq"])
    [history] = back.payloads("conversationHistory")
    assert [m["content"] for m in history["messages"]] == ["reply 2", "reply 3", "reply 4"]
    assert [m["seq"] for m in history["messages"]] == [3, 4, 5]
    # Without lastSeq the widget protocol is unchanged: the last 50.
    fresh = await clients.visitor(url, project.id, visitor_uid)
    assert len(fresh.payloads("conversationHistory")[0]["messages"]) == 5
    for recorder in (back, fresh, dash):
        await recorder.close()


async def test_receipts_and_context_reach_the_right_sockets(
    cluster: Cluster, directory: Directory, signer: TokenSigner
) -> None:
    project, agent = await project_with_agent(directory)
    [url] = await cluster.start_path()
    visitor_uid = uid()
    tab = await clients.visitor(url, project.id, visitor_uid)
    other_tab = await clients.visitor(url, project.id, uid())
    dash = await clients.dashboard(url, signer.issue(agent.id), project.id)
    assert (await tab.call("sendMessage", text("hello?")))["ok"]
    [first] = await dash.wait_for("newMessage", 1)
    conversation = first["conversationId"]
    await dash.call("sendReply", {"conversationId": conversation, **text("answer")})
    [answer] = await tab.wait_for("agentReplied", 1)

    assert await tab.call("markDelivered", {"upToSeq": answer["seq"]}) == {"ok": True}
    [delivered] = await dash.wait_for("messagesDelivered", 1)
    assert delivered == {"conversationId": conversation, "upToSeq": 2}
    assert await tab.call("markRead", {"upToSeq": answer["seq"]}) == {"ok": True}
    [read] = await dash.wait_for("messagesRead", 1)
    assert read == {"conversationId": conversation, "upToSeq": 2, "by": "visitor"}

    ack = await tab.call(
        "updateContext", {"currentUrl": "https://shop.example/cart", "currentTitle": "Cart"}
    )
    assert ack == {"ok": True, "stored": True}
    [context] = await dash.wait_for("visitorContextUpdated", 1)
    assert context == {"conversationId": conversation, "currentUrl": "https://shop.example/cart"}

    for payload in ({"upToSeq": -1}, {"upToSeq": "2"}, "x"):
        assert (await tab.call("markRead", payload))["error"]["code"] == "invalid_payload"
    assert (await tab.call("updateContext", {"currentUrl": 5}))["error"][
        "code"
    ] == "invalid_payload"

    async with httpx.AsyncClient(base_url=url, timeout=15) as http:
        page = await http.get(
            f"/api/projects/{project.id}/conversations/{conversation}/messages?after_seq=0",
            headers={"Authorization": f"Bearer {signer.issue(agent.id)}"},
        )
    statuses = {m["seq"]: m["status"] for m in page.json()["messages"]}
    assert statuses == {1: "sent", 2: "read"}

    await asyncio.sleep(SETTLE)
    assert other_tab.payloads("messagesRead") == []
    assert tab.payloads("messagesRead") == []  # the visitor's own receipt is not echoed
    assert len(dash.payloads("messagesRead")) == 1
    for recorder in (tab, other_tab, dash):
        await recorder.close()


async def test_an_agent_reading_tells_the_visitor_and_the_other_dashboards(
    cluster: Cluster, directory: Directory, signer: TokenSigner
) -> None:
    project, agent = await project_with_agent(directory)
    [url] = await cluster.start_path()
    tab = await clients.visitor(url, project.id, uid())
    dash = await clients.dashboard(url, signer.issue(agent.id), project.id)
    for i in range(3):
        assert (await tab.call("sendMessage", text(f"m{i}")))["ok"]
    messages = await dash.wait_for("newMessage", 3)
    conversation = messages[0]["conversationId"]

    async with httpx.AsyncClient(base_url=url, timeout=15) as http:
        response = await http.patch(
            f"/api/projects/{project.id}/conversations/{conversation}",
            json={"read": True},
            headers={"Authorization": f"Bearer {signer.issue(agent.id)}"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["unreadCount"] == 0
    [read] = await tab.wait_for("messagesRead", 1)
    assert read == {"conversationId": conversation, "upToSeq": 3, "by": "agent"}
    [updated] = await dash.wait_for("conversationUpdated", 1)
    assert updated == {"conversationId": conversation, "fields": {"unreadCount": 0}}
    await asyncio.sleep(SETTLE)
    assert dash.payloads("messagesRead") == []  # the agents' own receipt goes to the visitor
    await tab.close()
    await dash.close()


async def test_an_http_reply_answers_202_when_storing_takes_longer(
    cluster: Cluster, directory: Directory, signer: TokenSigner
) -> None:
    """No worker yet: the reply is safe on the topic, and stored once one starts."""
    project, agent = await project_with_agent(directory)
    await cluster.worker("first-worker")
    await cluster.relay()
    url = await cluster.gateway()
    tab = await clients.visitor(url, project.id, uid())
    dash = await clients.dashboard(url, signer.issue(agent.id), project.id)
    assert (await tab.call("sendMessage", text("hello?")))["ok"]
    [first] = await dash.wait_for("newMessage", 1)
    cluster.children[0].stop()  # the worker goes away

    reply = text("sorry for the wait")
    async with httpx.AsyncClient(base_url=url, timeout=15) as http:
        response = await http.post(
            f"/api/projects/{project.id}/conversations/{first['conversationId']}/messages",
            json=reply,
            headers={"Authorization": f"Bearer {signer.issue(agent.id)}"},
        )
    assert response.status_code == 202
    assert response.json() == {"tempId": reply["tempId"], "status": "accepted"}

    await cluster.worker("second-worker")
    [answer] = await tab.wait_for("agentReplied", 1, timeout=60)
    assert answer["tempId"] == reply["tempId"] and answer["seq"] == 2
    await tab.close()
    await dash.close()

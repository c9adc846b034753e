"""Typing indicators through real gateways, Redis and PostgreSQL, on one and two gateways."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.tokens import TokenSigner
from parley.settings import Settings
from persistence.directory import Directory, Project
from persistence.store import MessageStore
from tests import clients
from tests.factories import incoming, uid
from tests.gateway.ephemeral import only, settle, wait_for_subscribers
from tests.servers import gateway_in_process

OK = {"ok": True}


@pytest.fixture
async def two_gateways(settings: Settings) -> AsyncIterator[tuple[str, str]]:
    async with gateway_in_process(settings) as first, gateway_in_process(settings) as second:
        await wait_for_subscribers(settings, 2)
        yield first, second


async def open_conversation(engine: AsyncEngine, project_id: int, visitor_uid: str) -> int:
    result = await MessageStore(engine=engine).append([incoming(project_id, visitor_uid)])
    return int(result.stored[0]["conversationId"])


async def test_visitor_typing_reaches_every_dashboard_of_its_project_only(
    two_gateways: tuple[str, str],
    project: Project,
    agent_token: str,
    directory: Directory,
    signer: TokenSigner,
    engine: AsyncEngine,
) -> None:
    first, second = two_gateways
    other = await directory.create_project(name="Other")
    outsider = await directory.add_agent(project_id=other.id, email="eve@other.test")
    here = await clients.dashboard(first, agent_token, project.id)
    there = await clients.dashboard(second, agent_token, project.id)
    elsewhere = await clients.dashboard(second, signer.issue(outsider.id), other.id)
    visitor_uid = uid()
    visitor = await clients.visitor(first, project.id, visitor_uid)

    # Before the first message there is no conversation yet.
    assert await visitor.call("visitorIsTyping", {"isTyping": True}) == OK
    expected = {
        "conversationId": None,
        "projectId": project.id,
        "visitorUid": visitor_uid,
        "isTyping": True,
    }
    assert await only(here, "visitorIsTyping", 1) == [expected]
    assert await only(there, "visitorIsTyping", 1) == [expected]

    conversation_id = await open_conversation(engine, project.id, visitor_uid)
    assert await visitor.call("visitorIsTyping", {"isTyping": False}) == OK
    stopped = {**expected, "conversationId": conversation_id, "isTyping": False}
    assert (await only(here, "visitorIsTyping", 2))[1] == stopped
    assert (await only(there, "visitorIsTyping", 2))[1] == stopped
    assert elsewhere.payloads("visitorIsTyping") == []
    for client in (visitor, here, there, elsewhere):
        await client.close()


async def test_agent_typing_reaches_every_tab_of_that_visitor_only(
    two_gateways: tuple[str, str], project: Project, agent_token: str, engine: AsyncEngine
) -> None:
    first, second = two_gateways
    visitor_uid = uid()
    conversation_id = await open_conversation(engine, project.id, visitor_uid)
    tab1 = await clients.visitor(first, project.id, visitor_uid)
    tab2 = await clients.visitor(second, project.id, visitor_uid)
    stranger = await clients.visitor(first, project.id, uid())
    agent = await clients.dashboard(second, agent_token, project.id)

    ack = await agent.call("agentTyping", {"conversationId": conversation_id, "isTyping": True})
    assert ack == OK
    for tab in (tab1, tab2):
        assert await only(tab, "agentIsTyping", 1) == [{"agentName": "ada", "isTyping": True}]
    assert stranger.payloads("agentIsTyping") == []
    for client in (tab1, tab2, stranger, agent):
        await client.close()


async def test_agent_typing_needs_a_conversation_of_its_projects(
    gateway_url: str,
    project: Project,
    agent_token: str,
    directory: Directory,
    engine: AsyncEngine,
) -> None:
    other = await directory.create_project(name="Other")
    theirs = await open_conversation(engine, other.id, uid())
    agent = await clients.dashboard(gateway_url, agent_token, project.id)
    for conversation_id in (theirs, 987654):
        ack = await agent.call("agentTyping", {"conversationId": conversation_id, "isTyping": True})
        assert ack["ok"] is False and ack["error"]["code"] == "forbidden", ack
    visitor = await clients.visitor(gateway_url, project.id, uid())
    ack = await visitor.call("agentTyping", {"conversationId": theirs, "isTyping": True})
    assert ack["error"]["code"] == "forbidden"
    await agent.close()
    await visitor.close()


async def test_malformed_typing_payloads_get_an_error_ack(
    gateway_url: str, project: Project, agent_token: str, engine: AsyncEngine
) -> None:
    anonymous = await clients.visitor(gateway_url, project.id, None)
    ack = await anonymous.call("visitorIsTyping", {"isTyping": True})
    assert ack["error"]["code"] == "not_identified"
    visitor_uid = uid()
    visitor = await clients.visitor(gateway_url, project.id, visitor_uid)
    for payload in ("x", [True], {}, {"isTyping": "yes"}, {"isTyping": 1}, {"isTyping": None}):
        ack = await visitor.call("visitorIsTyping", payload)
        assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", payload
    ack = await visitor.client.call("visitorIsTyping", timeout=15)  # no payload at all
    assert ack["error"]["code"] == "invalid_payload"

    conversation_id = await open_conversation(engine, project.id, visitor_uid)
    agent = await clients.dashboard(gateway_url, agent_token, project.id)
    for payload in (
        None,
        {"conversationId": str(conversation_id), "isTyping": True},
        {"conversationId": True, "isTyping": True},
        {"conversationId": -1, "isTyping": True},
        {"conversationId": conversation_id},
        {"conversationId": conversation_id, "isTyping": "false"},
    ):
        ack = await agent.call("agentTyping", payload)
        assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", payload
    # Both sockets are still alive and usable.
    assert await visitor.call("visitorIsTyping", {"isTyping": True}) == OK
    ack = await agent.call("agentTyping", {"conversationId": conversation_id, "isTyping": True})
    assert ack == OK
    for client in (anonymous, visitor, agent):
        await client.close()


async def test_an_identical_state_within_half_a_second_is_not_rebroadcast(
    gateway_url: str, project: Project, agent_token: str, settings: Settings
) -> None:
    await wait_for_subscribers(settings, 1)
    dashboard = await clients.dashboard(gateway_url, agent_token, project.id)
    visitor = await clients.visitor(gateway_url, project.id, uid())
    for _ in range(3):
        assert await visitor.call("visitorIsTyping", {"isTyping": True}) == OK
    assert await visitor.call("visitorIsTyping", {"isTyping": False}) == OK
    assert await visitor.call("visitorIsTyping", {"isTyping": False}) == OK
    states = [event["isTyping"] for event in await only(dashboard, "visitorIsTyping", 2)]
    assert states == [True, False]
    # After the window the same state goes out again.
    assert await visitor.call("visitorIsTyping", {"isTyping": False}) == OK
    states = [event["isTyping"] for event in await only(dashboard, "visitorIsTyping", 3)]
    assert states == [True, False, False]
    await visitor.close()
    await dashboard.close()


async def test_a_typing_flag_clears_itself_after_the_timeout(
    settings: Settings, project: Project, agent_token: str, engine: AsyncEngine
) -> None:
    timeout = 0.5
    async with gateway_in_process(settings.replace(typing_timeout=timeout)) as url:
        await wait_for_subscribers(settings, 1)
        visitor_uid = uid()
        conversation_id = await open_conversation(engine, project.id, visitor_uid)
        dashboard = await clients.dashboard(url, agent_token, project.id)
        visitor = await clients.visitor(url, project.id, visitor_uid)

        started = time.monotonic()
        assert await visitor.call("visitorIsTyping", {"isTyping": True}) == OK
        await asyncio.sleep(0.3)
        # A repeat inside the throttle window is not re-sent, but it still
        # counts as "still typing" and postpones the clear.
        assert await visitor.call("visitorIsTyping", {"isTyping": True}) == OK
        events = await only(dashboard, "visitorIsTyping", 2, timeout=5)
        assert [event["isTyping"] for event in events] == [True, False]
        cleared_after = (
            dashboard.received["visitorIsTyping"][1][0]
            - (dashboard.received["visitorIsTyping"][0][0])
        )
        assert 0.3 + timeout * 0.8 <= cleared_after < 3, cleared_after
        assert time.monotonic() - started < 5

        await dashboard.call("agentTyping", {"conversationId": conversation_id, "isTyping": True})
        events = await only(visitor, "agentIsTyping", 2, timeout=5)
        assert [event["isTyping"] for event in events] == [True, False]
        await visitor.close()
        await dashboard.close()


async def test_closing_a_typing_socket_sends_false(
    two_gateways: tuple[str, str], project: Project, agent_token: str, engine: AsyncEngine
) -> None:
    first, second = two_gateways
    visitor_uid = uid()
    conversation_id = await open_conversation(engine, project.id, visitor_uid)
    dashboard = await clients.dashboard(second, agent_token, project.id)
    visitor = await clients.visitor(first, project.id, visitor_uid)
    other_tab = await clients.visitor(first, project.id, visitor_uid)
    assert await visitor.call("visitorIsTyping", {"isTyping": True}) == OK
    ack = await dashboard.call("agentTyping", {"conversationId": conversation_id, "isTyping": True})
    assert ack == OK
    await dashboard.wait_for("visitorIsTyping", 1)
    await other_tab.wait_for("agentIsTyping", 1)

    closed = time.monotonic()
    await visitor.close()
    events = await dashboard.wait_for("visitorIsTyping", 2, timeout=3)
    assert [event["isTyping"] for event in events] == [True, False]
    await dashboard.close()
    events = await other_tab.wait_for("agentIsTyping", 2, timeout=3)
    assert [event["isTyping"] for event in events] == [True, False]
    # Well inside the 5 s timeout: the close sent these, not the timer.
    assert time.monotonic() - closed < 4
    await settle()
    assert len(other_tab.payloads("agentIsTyping")) == 2
    await other_tab.close()

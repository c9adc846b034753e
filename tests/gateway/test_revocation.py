"""Token revocation and removal: HTTP at once, connected dashboards within seconds."""

from __future__ import annotations

import asyncio
import time

import httpx

from gateway.revocation import announce, revocation_channel
from gateway.tokens import TokenSigner
from parley.settings import Settings
from persistence.directory import Directory, Project
from tests import clients
from tests.clients import Recorder
from tests.factories import uid
from tests.gateway.ephemeral import only, redis_client, wait_for_subscribers
from tests.servers import gateway_in_process

CUT_OFF = 5.0  # seconds a revoked dashboard may keep its socket after the notice


async def disconnected(dash: Recorder, timeout: float = CUT_OFF) -> float:
    started = time.monotonic()
    while dash.client.connected:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"still connected {timeout}s after the revocation")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def notify(settings: Settings, agent_id: int) -> int:
    async with redis_client(settings) as client:
        return await announce(client, events_channel=settings.events_channel, agent_id=agent_id)


async def wait_for_revocation_listener(settings: Settings) -> None:
    channel = revocation_channel(settings.events_channel)
    async with redis_client(settings) as client:
        async with asyncio.timeout(10):
            while (await client.pubsub_numsub(channel))[0][1] < 1:
                await asyncio.sleep(0.02)


async def test_a_revoked_token_is_refused_over_http_and_at_connect(
    settings: Settings, directory: Directory, project: Project, signer: TokenSigner
) -> None:
    agent = await directory.add_agent(project_id=project.id, email="ada@acme.test")
    token = signer.issue(agent.id, version=agent.token_version)
    async with (
        gateway_in_process(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=15) as http,
    ):
        conversations = f"/api/projects/{project.id}/conversations"
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await http.get(conversations, headers=bearer)).status_code == 200
        revoked = await directory.revoke_tokens(agent.id)
        response = await http.get(conversations, headers=bearer)
        assert response.status_code == 401
        assert "revoked" in response.json()["error"]["message"]
        reply = await http.post(
            f"/api/projects/{project.id}/conversations/1/messages",
            headers=bearer,
            json={"content": "hi", "tempId": "7b0a4a2e-56f7-4b6c-9d2e-0c8f5e7a1b2c"},
        )
        assert reply.status_code == 401
        error = await clients.refused(url, auth={"token": token})
        assert error["code"] == "invalid_token" and "revoked" in error["message"]
        fresh = signer.issue(agent.id, version=revoked.token_version)
        headers = {"Authorization": f"Bearer {fresh}"}
        assert (await http.get(conversations, headers=headers)).status_code == 200


async def test_a_connected_dashboard_is_cut_off_within_seconds_of_the_notice(
    settings: Settings, directory: Directory, project: Project, signer: TokenSigner
) -> None:
    agent = await directory.add_agent(project_id=project.id, email="ada@acme.test")
    colleague = await directory.add_agent(project_id=project.id, email="bob@acme.test")
    async with gateway_in_process(settings) as url:
        await wait_for_revocation_listener(settings)
        dash = await clients.dashboard(url, signer.issue(agent.id), project.id)
        other = await clients.dashboard(url, signer.issue(colleague.id), project.id)
        await directory.revoke_tokens(agent.id)
        assert await notify(settings, agent.id) >= 1
        await disconnected(dash)
        assert other.client.connected  # only the revoked agent's sockets
        ack = await other.call("sync", {"projectId": project.id})
        assert "conversations" in ack
        await other.close()


async def test_a_removed_agent_leaves_the_project_room_and_loses_its_events(
    settings: Settings, directory: Directory, project: Project, signer: TokenSigner
) -> None:
    agent = await directory.add_agent(project_id=project.id, email="ada@acme.test")
    colleague = await directory.add_agent(project_id=project.id, email="bob@acme.test")
    async with gateway_in_process(settings) as url:
        await wait_for_revocation_listener(settings)
        await wait_for_subscribers(settings, 1)
        dash = await clients.dashboard(url, signer.issue(agent.id), project.id)
        other = await clients.dashboard(url, signer.issue(colleague.id), project.id)
        assert await directory.remove_member(project_id=project.id, agent_id=agent.id)
        await notify(settings, agent.id)
        tab = await clients.visitor(url, project.id, uid())
        deadline = time.monotonic() + CUT_OFF
        typing = True
        while True:  # the notice is asynchronous: once it landed, only members hear typing
            typing = not typing
            before = len(dash.payloads("visitorIsTyping"))
            expected = len(other.payloads("visitorIsTyping")) + 1
            assert await tab.call("visitorIsTyping", {"isTyping": typing}) == {"ok": True}
            assert len(await other.wait_for("visitorIsTyping", expected)) == expected
            await asyncio.sleep(0.2)  # as long as the same event would take to reach dash
            if len(dash.payloads("visitorIsTyping")) == before:
                break
            assert time.monotonic() < deadline, "the removed agent still receives project events"
        ack = await dash.call("sync", {"projectId": project.id})
        assert ack["ok"] is False and ack["error"]["code"] == "forbidden"
        ack = await dash.call("joinProjectRoom", {"projectId": project.id})
        assert ack["status"] == "error"
        assert dash.client.connected  # its token is still good for its other projects
        for client in (dash, other, tab):
            await client.close()


async def test_the_periodic_recheck_catches_a_lost_notice(
    settings: Settings, directory: Directory, project: Project, signer: TokenSigner
) -> None:
    agent = await directory.add_agent(project_id=project.id, email="ada@acme.test")
    async with gateway_in_process(settings.replace(agent_recheck_interval=0.5)) as url:
        dash = await clients.dashboard(url, signer.issue(agent.id), project.id)
        await directory.revoke_tokens(agent.id)  # and nobody announces it
        await disconnected(dash)


async def test_a_malformed_notice_is_ignored(
    settings: Settings, project: Project, agent_token: str
) -> None:
    async with gateway_in_process(settings) as url:
        await wait_for_revocation_listener(settings)
        dash = await clients.dashboard(url, agent_token, project.id)
        async with redis_client(settings) as client:
            channel = revocation_channel(settings.events_channel)
            for junk in (b"not json", b'{"agentId": "1"}', b"[]", b'{"agentId": true}'):
                await client.publish(channel, junk)
        await only(dash, "visitorIsTyping", 0, timeout=0.1)
        assert dash.client.connected
        assert "conversations" in await dash.call("sync", {"projectId": project.id})
        await dash.close()

"""Dashboard sockets: token auth and project rooms."""

from __future__ import annotations

import time

from gateway.tokens import TokenSigner
from parley.settings import Secret, Settings
from persistence.directory import Directory, Project
from tests import clients
from tests.factories import uid


async def test_member_joins_its_project_room(
    gateway_url: str, agent_token: str, project: Project
) -> None:
    dash = await clients.dashboard(gateway_url, agent_token)
    ack = await dash.call("joinProjectRoom", {"projectId": project.id})
    assert ack == {"status": "ok", "roomName": f"project:{project.id}"}
    await dash.close()


async def test_other_projects_are_forbidden(
    gateway_url: str, agent_token: str, directory: Directory
) -> None:
    other = await directory.create_project(name="Other")
    dash = await clients.dashboard(gateway_url, agent_token)
    assert await dash.call("joinProjectRoom", {"projectId": other.id}) == {
        "status": "error",
        "message": "Forbidden",
    }
    assert await dash.call("joinProjectRoom", {"projectId": 424242}) == {
        "status": "error",
        "message": "Forbidden",
    }
    await dash.close()


async def test_malformed_join_payloads_get_an_error_ack(gateway_url: str, agent_token: str) -> None:
    dash = await clients.dashboard(gateway_url, agent_token)
    for payload in ("7", [1], {"projectId": "x"}, {"projectId": None}, {}):
        ack = await dash.call("joinProjectRoom", payload)
        assert ack["status"] == "error", payload
    # And the socket is still alive and usable.
    assert (await dash.call("joinProjectRoom", {"projectId": 0}))["status"] == "error"
    await dash.close()


async def test_visitor_cannot_join_a_project_room(gateway_url: str, project: Project) -> None:
    visitor = await clients.visitor(gateway_url, project.id, uid())
    assert await visitor.call("joinProjectRoom", {"projectId": project.id}) == {
        "status": "error",
        "message": "Forbidden",
    }
    await visitor.close()


async def test_bad_tokens_are_refused(
    gateway_url: str,
    agent_token: str,
    settings: Settings,
    signer: TokenSigner,
    directory: Directory,
    project: Project,
) -> None:
    payload, signature = agent_token.split(".")
    agent = await directory.add_agent(project_id=project.id, email="old@acme.test")
    cases = {
        "garbage": "token is malformed",
        f"{payload}.{signature[:-2]}xx": "token signature is invalid",
        TokenSigner(secret=Secret("another key"), ttl=3600).issue(agent.id): (
            "token signature is invalid"
        ),
        TokenSigner(secret=settings.secret, ttl=1).issue(agent.id, now=time.time() - 60): (
            "token has expired"
        ),
        signer.issue(999999): "the token's agent no longer exists",
    }
    for token, reason in cases.items():
        error = await clients.refused(gateway_url, auth={"token": token})
        assert error["code"] == "invalid_token", token
        assert error["message"] == reason
    error = await clients.refused(gateway_url, auth={"token": 12345})
    assert error["code"] == "invalid_token"

"""Who is calling the dashboard API: ``Authorization: Bearer <token>`` and project membership."""

from __future__ import annotations

from starlette.requests import Request

from gateway.errors import Forbidden, InvalidToken
from gateway.services import Services
from persistence.directory import Agent
from persistence.errors import NotFound

SCHEME = "bearer"  # compared case-insensitively, as RFC 7235 asks


def bearer_token(request: Request) -> str:
    """The token of the ``Authorization`` header; :class:`InvalidToken` when there is none."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != SCHEME or not token.strip():
        raise InvalidToken("an Authorization: Bearer <token> header is required")
    return token.strip()


async def agent_for_token(services: Services, token: object) -> Agent:
    """The token's agent; :class:`InvalidToken` when the token is bad, expired or revoked.

    Looked up on every use, so ``parley agent revoke`` takes effect at once.
    """
    agent_id, version = services.signer.verify_agent(token)
    try:
        agent = await services.directory.get_agent(agent_id)
    except NotFound:
        raise InvalidToken("the token's agent no longer exists") from None
    if agent.token_version != version:
        raise InvalidToken("the token has been revoked")
    return agent


async def authenticate(request: Request) -> int:
    """The calling agent's id; :class:`InvalidToken` (401) for a missing, bad, expired or
    revoked token."""
    services: Services = request.state.services
    return (await agent_for_token(services, bearer_token(request))).id


async def require_member(services: Services, *, agent_id: int, project_id: int) -> None:
    """Raise :class:`Forbidden` (403) unless the agent belongs to the project.

    A project that does not exist is forbidden too, so ids cannot be probed; a
    deleted agent's token is :class:`InvalidToken` (401).
    """
    if await services.directory.is_member(agent_id=agent_id, project_id=project_id):
        return
    # Only on the refusal path: a deleted agent's token no longer authenticates.
    try:
        await services.directory.get_agent(agent_id)
    except NotFound:
        raise InvalidToken("the token's agent no longer exists") from None
    raise Forbidden("you are not a member of this project")


async def authorize(request: Request, project_id: int) -> int:
    """:func:`authenticate`, then :func:`require_member`: the agent's id, or 401/403."""
    agent_id = await authenticate(request)
    await require_member(request.state.services, agent_id=agent_id, project_id=project_id)
    return agent_id

"""Dashboard sockets: token auth at connect, ``joinProjectRoom``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from gateway import catchup, validation
from gateway.bearer import agent_for_token
from gateway.clients import AgentClient, ClientRegistry
from gateway.errors import Forbidden, GatewayError, Unavailable
from gateway.fanout import agent_room, project_room
from gateway.replies import send_reply
from gateway.services import Services
from persistence.errors import DatabaseUnavailable

logger = logging.getLogger("parley.dashboards")


class DashboardHandlers:
    """Socket.IO handlers for agents' dashboards."""

    def __init__(
        self, *, sio: Any, clients: ClientRegistry, services: Callable[[], Services]
    ) -> None:
        self._sio = sio
        self._clients = clients
        self._services = services

    async def connect(self, sid: str, environ: Mapping[str, Any], auth: dict[str, Any]) -> None:
        try:
            agent = await agent_for_token(self._services(), auth.get("token"))
        except DatabaseUnavailable:
            raise Unavailable("the service is temporarily unavailable; retry shortly") from None
        self._clients.add(
            sid,
            AgentClient(
                agent_id=agent.id,
                display_name=agent.display_name,
                token_version=agent.token_version,
            ),
        )
        # Acks for this agent's replies reach every one of its sockets.
        await self._sio.enter_room(sid, agent_room(agent.id))

    async def send_reply(self, sid: str, *args: Any) -> dict[str, Any]:
        """``sendReply {conversationId, content, tempId}`` → ``{"ok": true}`` once queued."""
        client = self._clients.get(sid)
        try:
            if not isinstance(client, AgentClient):
                raise Forbidden("only dashboards can reply")
            reply = validation.outgoing_reply(validation.single_payload(args))
            await send_reply(self._services(), agent_id=client.agent_id, reply=reply)
        except GatewayError as exc:
            return exc.as_ack()
        return {"ok": True}

    async def join_project_room(self, sid: str, *args: Any) -> dict[str, Any]:
        client = self._clients.get(sid)
        if not isinstance(client, AgentClient):
            return {"status": "error", "message": "Forbidden"}
        try:
            body = validation.require_object(validation.single_payload(args))
            project_id = validation.project_id(body.get("projectId"))
        except GatewayError as exc:
            return {"status": "error", "message": exc.message}
        try:
            member = await self._services().directory.is_member(
                agent_id=client.agent_id, project_id=project_id
            )
        except DatabaseUnavailable:
            return {"status": "error", "message": "temporarily unavailable; retry shortly"}
        if not member:
            return {"status": "error", "message": "Forbidden"}
        room = project_room(project_id)
        await self._sio.enter_room(sid, room)
        logger.info("agent %s joined %s", client.agent_id, room, extra={"action": "dashboard.join"})
        return {"status": "ok", "roomName": room}

    async def sync(self, sid: str, *args: Any) -> dict[str, Any]:
        """``sync {projectId, since?, lastSeqs?}`` → one page of what changed, as ``GET …/sync``.

        See :meth:`persistence.conversations.Conversations.sync` for the body and
        how to page on (while ``hasMore``, ``since`` = the returned ``cursor``).
        """
        client = self._clients.get(sid)
        try:
            if not isinstance(client, AgentClient):
                raise Forbidden("only dashboards can sync")
            request = catchup.sync_event(validation.single_payload(args))
            services = self._services()
            try:
                if not await services.directory.is_member(
                    agent_id=client.agent_id, project_id=request.project_id
                ):
                    raise Forbidden("you are not a member of this project")
                return await services.conversations.sync(
                    project_id=request.project_id,
                    since=request.since,
                    last_seqs=request.last_seqs,
                )
            except DatabaseUnavailable:
                raise Unavailable("temporarily unavailable; retry shortly") from None
        except GatewayError as exc:
            return exc.as_ack()

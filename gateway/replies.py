"""Agent replies: checked here, then produced to the agent-messages topic.

The same path serves the dashboard's ``sendReply`` socket event and
``POST /api/projects/{projectId}/conversations/{id}/messages``; either way the reply
is stored by the persistence agent and relayed like every other message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import bodies, validation
from gateway.api import HTTP_STATUS
from gateway.bearer import authorize
from gateway.errors import (
    Forbidden,
    GatewayError,
    NotFoundError,
    RateLimited,
    Unavailable,
)
from gateway.fanout import Fanout
from gateway.services import Services
from persistence.errors import DatabaseUnavailable, NotFound
from streams.errors import BrokerUnavailable
from streams.events import AgentMessage

logger = logging.getLogger("parley.replies")

REPLY_WAIT = 5.0  # seconds an HTTP reply waits for its stored message before a 202
# 5,000 characters of content, each up to 12 bytes as a JSON escape of a
# surrogate pair, plus the tempId and the braces.
MAX_REPLY_BODY = 65_536  # bytes
REPLIES = Counter("parley_gateway_replies_accepted_total", "Agent replies the broker confirmed")


async def send_reply(
    services: Services,
    *,
    agent_id: int,
    reply: validation.OutgoingReply,
    project_id: int | None = None,
) -> None:
    """Check membership and produce the reply; raise a GatewayError saying why not."""
    try:
        route = await services.history.route(reply.conversation_id)
        if project_id is not None and route.project_id != project_id:
            raise NotFound("conversation is in another project")
        member = await services.directory.is_member(agent_id=agent_id, project_id=route.project_id)
    except NotFound:
        raise NotFoundError(f"conversation {reply.conversation_id} does not exist") from None
    except DatabaseUnavailable:
        raise Unavailable("temporarily unavailable; retry with the same tempId") from None
    if not member:
        raise Forbidden("you are not a member of this conversation's project")
    retry_after = await services.limiter.check(f"agent:{agent_id}")
    if retry_after:
        raise RateLimited(f"too many messages; retry in {retry_after}s", retryAfter=retry_after)
    event = AgentMessage(
        project_id=route.project_id,
        conversation_id=route.id,
        visitor_uid=route.visitor_uid,
        agent_id=agent_id,
        temp_id=reply.temp_id,
        content=reply.content,
    )
    try:
        await services.producer.send_agent_message(event)
    except BrokerUnavailable:
        raise Unavailable(
            "reply not accepted: the queue is unavailable; retry with the same tempId"
        ) from None
    REPLIES.inc()


def error_response(exc: GatewayError) -> JSONResponse:
    return JSONResponse(exc.as_ack(), status_code=HTTP_STATUS.get(exc.code, 500))


async def post_reply(request: Request) -> Response:
    """``POST …/conversations/{id}/messages``: 201 with the stored message, or 202."""
    services: Services = request.state.services
    fanout: Fanout = request.state.fanout
    try:
        project_id = validation.project_id(request.path_params["projectId"])
        try:
            agent_id = await authorize(request, project_id)
        except DatabaseUnavailable:
            raise Unavailable("temporarily unavailable; retry shortly") from None
        conversation = validation.integer(
            request.path_params["id"], "conversation id", low=1, high=validation.BIGINT_MAX
        )
        body: Any = await bodies.read_json(request, limit=MAX_REPLY_BODY)
        reply = validation.outgoing_reply(body, conversation=conversation)
        with fanout.awaiting(reply.temp_id) as stored:
            await send_reply(services, agent_id=agent_id, reply=reply, project_id=project_id)
            try:
                async with asyncio.timeout(REPLY_WAIT):
                    message = await stored
            except TimeoutError:
                return JSONResponse({"tempId": reply.temp_id, "status": "accepted"}, 202)
    except GatewayError as exc:
        return error_response(exc)
    return JSONResponse(message, status_code=201)


routes = [
    Route("/api/projects/{projectId}/conversations/{id}/messages", post_reply, methods=["POST"]),
]

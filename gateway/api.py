"""The dashboard's HTTP API under ``/api``: conversations, messages, visitors, catch-up sync.

Every endpoint takes ``Authorization: Bearer <agent token>`` and answers JSON,
errors included: ``{"error": {"code", "message"}}`` with 400 ``invalid_payload``,
401 ``invalid_token``, 403 ``forbidden``, 404 ``not_found``, 409 ``conflict`` or
503 ``unavailable``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Collection

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway import bodies, catchup, validation
from gateway.bearer import authenticate, require_member
from gateway.errors import GatewayError, InvalidPayload
from gateway.services import Services
from persistence.conversations import MAX_PAGE_LIMIT, PAGE_LIMIT, STATUSES
from persistence.cursors import InvalidCursor, PageCursor
from persistence.errors import Conflict, DatabaseUnavailable, NotFound
from persistence.history import HISTORY_LIMIT, MAX_PAGE

logger = logging.getLogger("parley.api")

MAX_BODY = 4_096  # bytes of a PATCH body; the largest valid one is ~40
HTTP_STATUS = {
    "invalid_payload": 400,
    "invalid_token": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "payload_too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
}

Handler = Callable[[Request], Awaitable[Response]]


def error(code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if code == "invalid_token" else None
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=HTTP_STATUS.get(code, 500),
        headers=headers,
    )


def endpoint(handler: Handler) -> Handler:
    """Turn the gateway's and the store's exceptions into JSON error responses."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except GatewayError as exc:
            return error(exc.code, exc.message)
        except NotFound as exc:
            return error("not_found", str(exc))
        except Conflict as exc:
            return error("conflict", str(exc))
        except DatabaseUnavailable:
            logger.warning("database unavailable", extra={"action": "api.unavailable"})
            return error("unavailable", "the service is temporarily unavailable; retry shortly")

    return run


def _query(request: Request, allowed: Collection[str]) -> dict[str, str]:
    """The query parameters, refusing unknown ones (a typo would silently do nothing)."""
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        raise InvalidPayload(f"unknown query parameter: {', '.join(unknown)}")
    return dict(request.query_params)


def _optional_int(params: dict[str, str], name: str, *, low: int, high: int) -> int | None:
    if name not in params:
        return None
    return validation.integer(params[name], name, low=low, high=high)


async def _project(request: Request) -> tuple[Services, int]:
    """The services and the path's project id, once the caller proved membership."""
    agent_id = await authenticate(request)
    project_id = validation.project_id(request.path_params["project_id"])
    services: Services = request.state.services
    await require_member(services, agent_id=agent_id, project_id=project_id)
    return services, project_id


def _conversation_id(request: Request) -> int:
    return validation.integer(
        request.path_params["conversation_id"], "conversation id", low=1, high=catchup.MAX_ID
    )


@endpoint
async def list_conversations(request: Request) -> Response:
    """``GET /api/projects/{projectId}/conversations?status=&cursor=&limit=``"""
    services, project_id = await _project(request)
    params = _query(request, ("status", "cursor", "limit"))
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise InvalidPayload(f"status must be one of: {', '.join(STATUSES)}")
    try:
        cursor = PageCursor.decode(params["cursor"]) if params.get("cursor") else None
    except InvalidCursor as exc:
        raise InvalidPayload(f"cursor: {exc}") from None
    limit = _optional_int(params, "limit", low=1, high=MAX_PAGE_LIMIT) or PAGE_LIMIT
    page = await services.conversations.page(
        project_id=project_id, status=status, cursor=cursor, limit=limit
    )
    return JSONResponse({"conversations": page.items, "nextCursor": page.next_cursor})


@endpoint
async def list_messages(request: Request) -> Response:
    """``GET …/conversations/{id}/messages?after_seq=N|before_seq=N&limit=L``, seq ascending."""
    services, project_id = await _project(request)
    conversation_id = _conversation_id(request)
    params = _query(request, ("after_seq", "before_seq", "limit"))
    after = _optional_int(params, "after_seq", low=0, high=catchup.MAX_SEQ)
    before = _optional_int(params, "before_seq", low=1, high=catchup.MAX_SEQ)
    limit = _optional_int(params, "limit", low=1, high=MAX_PAGE) or HISTORY_LIMIT
    await services.conversations.get(project_id=project_id, conversation_id=conversation_id)
    found = await services.history.messages(
        conversation_id, after_seq=after, before_seq=before, limit=limit
    )
    return JSONResponse({"messages": found})


async def _patch_body(request: Request) -> tuple[bool, str | None]:
    body = await bodies.read_json(request, limit=MAX_BODY)
    if not isinstance(body, dict):
        raise InvalidPayload('the body must be an object like {"read": true}')
    unknown = sorted(set(body) - {"read", "status"})
    if unknown:
        raise InvalidPayload(f"unknown field: {', '.join(unknown)}")
    if not body:
        raise InvalidPayload('nothing to change: send "read" and/or "status"')
    if "read" in body and body["read"] is not True:
        raise InvalidPayload("read must be true (marking unread is not supported)")
    status = body.get("status")
    if "status" in body and status not in STATUSES:
        raise InvalidPayload(f"status must be one of: {', '.join(STATUSES)}")
    return "read" in body, status


@endpoint
async def update_conversation(request: Request) -> Response:
    """``PATCH …/conversations/{id}`` with ``{"read": true}`` and/or ``{"status": …}``."""
    services, project_id = await _project(request)
    conversation_id = _conversation_id(request)
    read, status = await _patch_body(request)
    item = await services.conversations.update(
        project_id=project_id, conversation_id=conversation_id, read=read, status=status
    )
    return JSONResponse(item)


@endpoint
async def visitor_details(request: Request) -> Response:
    """``GET /api/projects/{projectId}/visitors/{uid}``"""
    services, project_id = await _project(request)
    uid = validation.visitor_uid(request.path_params["uid"])
    _query(request, ())
    return JSONResponse(
        await services.conversations.visitor(project_id=project_id, visitor_uid=uid)
    )


@endpoint
async def sync(request: Request) -> Response:
    """``GET /api/projects/{projectId}/sync?since=<cursor>&last_seqs=12:5,13:9``

    One page, as the ``sync`` socket event answers: while ``hasMore`` is true, ask
    again with ``since`` = the returned ``cursor`` and the same ``last_seqs``.
    """
    services, project_id = await _project(request)
    params = _query(request, ("since", "last_seqs"))
    body = await services.conversations.sync(
        project_id=project_id,
        since=catchup.since(params.get("since")),
        last_seqs=catchup.last_seqs_query(params.get("last_seqs")),
    )
    return JSONResponse(body)


PROJECT = "/api/projects/{project_id}"

routes: list[BaseRoute] = [
    Route(f"{PROJECT}/conversations", list_conversations, methods=["GET"]),
    Route(f"{PROJECT}/conversations/{{conversation_id}}", update_conversation, methods=["PATCH"]),
    Route(f"{PROJECT}/conversations/{{conversation_id}}/messages", list_messages, methods=["GET"]),
    Route(f"{PROJECT}/visitors/{{uid:path}}", visitor_details, methods=["GET"]),
    Route(f"{PROJECT}/sync", sync, methods=["GET"]),
]

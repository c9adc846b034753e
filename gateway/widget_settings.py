"""The public widget settings call: ``GET /api/v1/public/projects/{projectId}/settings``.

It is the first call of the seed's reference widget and of Parley's own, made
from the host site's page: so it answers CORS for the project's origins (any
origin for a project without a list), and nothing else about the project.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.services import Services
from persistence.errors import DatabaseUnavailable, NotFound
from persistence.widget_settings import WidgetSettingsStore

logger = logging.getLogger("parley.widget_settings")

SETTINGS_MAX_AGE = 60  # seconds a browser may reuse the answer; the CLI's changes show after it
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight answer
PATH = "/api/v1/public/projects/{project_id}/settings"


def _error(status: int, code: str, message: str, cors: dict[str, str]) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=cors
    )


def _project_id(request: Request) -> int | None:
    raw = request.path_params["project_id"]
    return int(raw) if raw.isdigit() and 0 < int(raw) < 2**63 else None


async def settings(request: Request) -> Response:
    origin = request.headers.get("origin")
    # Until the project is known only its existence may leak, so the error is
    # readable by any page (the widget shows it), never the settings.
    open_cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}
    project_id = _project_id(request)
    if project_id is None:
        return _error(404, "not_found", "no such project", open_cors)
    services: Services = request.state.services
    try:
        # The connect path's cache: a flood of settings calls costs one lookup a project.
        project = await services.projects.get(project_id)
        values = await WidgetSettingsStore(engine=services.engine).get(project_id)
    except NotFound:
        return _error(404, "not_found", f"project {project_id} does not exist", open_cors)
    except DatabaseUnavailable:
        logger.warning("database unavailable", extra={"action": "widget_settings.unavailable"})
        return _error(503, "unavailable", "temporarily unavailable; retry shortly", open_cors)
    if not project.allows_origin(origin):
        logger.info(
            "settings refused for origin %s",
            origin,
            extra={"action": "widget_settings.forbidden_origin"},
        )
        return _error(403, "forbidden", "this origin may not embed the project's widget", {})
    headers = {"Cache-Control": f"public, max-age={SETTINGS_MAX_AGE}", "Vary": "Origin"}
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
    return JSONResponse(values.public(), headers=headers)


async def preflight(request: Request) -> Response:
    """A plain GET needs none, but a widget that adds a header would ask first."""
    origin = request.headers.get("origin")
    if not origin:
        return Response(status_code=204, headers={"Allow": "GET, OPTIONS"})
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get(
                "access-control-request-headers", "Content-Type"
            ),
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
            "Vary": "Origin",
        },
    )


routes: list[BaseRoute] = [
    Route(PATH, settings, methods=["GET"]),
    Route(PATH, preflight, methods=["OPTIONS"]),
]

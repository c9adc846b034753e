"""``/healthz`` (the process is up) and ``/readyz`` (every dependency answers).

``/readyz`` also names ``fanout`` while the relayed-events subscription is down:
Redis may answer a PING while refusing this gateway's SUBSCRIBE (an ACL), and a
gateway that is not subscribed delivers nothing live.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.services import Services
from gateway.subscription import ChannelSubscription
from persistence.database import ping as ping_database
from persistence.schema import require_schema

logger = logging.getLogger("parley.health")

CHECK_TIMEOUT = 2.0  # seconds per dependency


async def _check(probe: Callable[[], Awaitable[object]]) -> str | None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await probe()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return None


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    services: Services = request.state.services
    names = ("postgres", "redis", "broker", "schema")
    results = await asyncio.gather(
        _check(lambda: ping_database(services.engine)),
        _check(lambda: services.redis.ping()),
        _check(services.producer.ping),
        # A gateway on an unmigrated database stays out of the Service (rollouts wait).
        _check(lambda: require_schema(services.engine)),
    )
    failing = {name: error for name, error in zip(names, results, strict=True) if error}
    if "postgres" in failing:
        failing.pop("schema", None)  # one cause, named once
    subscriber: ChannelSubscription = request.state.subscriber
    if not subscriber.subscribed.is_set():
        failing["fanout"] = "not subscribed to the events channel; resubscribing"
    # Anyone can call /readyz; exception text names hosts and ports, so it goes to the logs.
    for name, error in sorted(failing.items()):
        logger.warning(
            "not ready: %s: %s",
            name,
            error,
            extra={"action": "health.failing", "dependency": name, "error": error},
        )
    if failing:
        return JSONResponse({"status": "unavailable", "failing": sorted(failing)}, status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

"""``/healthz`` (the process is up) and ``/readyz`` (every dependency answers).

``/readyz`` also names ``fanout`` while the relayed-events subscription is down:
Redis may answer a PING while refusing this gateway's SUBSCRIBE (an ACL), and a
gateway that is not subscribed delivers nothing live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.services import Services
from gateway.subscription import ChannelSubscription
from persistence.database import ping as ping_database

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
    names = ("postgres", "redis", "broker")
    results = await asyncio.gather(
        _check(lambda: ping_database(services.engine)),
        _check(lambda: services.redis.ping()),
        _check(services.producer.ping),
    )
    failing = {name: error for name, error in zip(names, results, strict=True) if error}
    subscriber: ChannelSubscription = request.state.subscriber
    if not subscriber.subscribed.is_set():
        failing["fanout"] = "not subscribed to the events channel; resubscribing"
    if failing:
        return JSONResponse(
            {
                "status": "unavailable",
                "failing": sorted(failing),
                "errors": failing,
            },
            status_code=503,
        )
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

"""``create_app(settings)``: the ASGI app — Starlette routes plus the Socket.IO server.

Engines, clients and the producer are built in the lifespan and reach HTTP
handlers through ``request.state``; the fan-out subscriber is a named task the
lifespan supervises and cancels on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import socketio
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway import health
from gateway.fanout import Fanout, Subscriber
from gateway.ratelimit import RateLimiter
from gateway.services import Services
from gateway.sockets import create_socket_server
from gateway.tokens import TokenSigner
from parley.settings import Settings
from persistence.database import create_engine
from persistence.directory import Directory
from persistence.history import History
from streams.producer import KafkaEventProducer

logger = logging.getLogger("parley.gateway")

REDIS_TIMEOUT = 2.0  # seconds for a Redis command to answer
SHUTDOWN_TIMEOUT = 5.0  # seconds the fan-out task gets to stop
STATIC = Path(__file__).parent / "static"


class ServiceSlot:
    """Holds the lifespan's services for Socket.IO handlers built before startup."""

    def __init__(self) -> None:
        self.value: Services | None = None

    def __call__(self) -> Services:
        if self.value is None:
            raise RuntimeError("the gateway has not started")
        return self.value


async def build_services(settings: Settings) -> Services:
    settings.require("database_url", "redis_url", "kafka_bootstrap_servers")
    assert settings.redis_url is not None and settings.kafka_bootstrap_servers is not None
    engine = create_engine(settings.sqlalchemy_url)
    client = aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        health_check_interval=10,
    )
    producer = KafkaEventProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, visitor_topic=settings.visitor_topic
    )
    try:
        await producer.start()
    except Exception:
        await client.aclose()
        await engine.dispose()
        raise
    return Services(
        engine=engine,
        redis=client,
        producer=producer,
        directory=Directory(engine=engine),
        history=History(engine=engine),
        limiter=RateLimiter(
            client=client, limit=settings.rate_limit_count, window=settings.rate_limit_window
        ),
        signer=TokenSigner(secret=settings.secret, ttl=settings.token_ttl),
    )


async def close_services(services: Services) -> None:
    await services.producer.stop()
    await services.redis.aclose()
    await services.engine.dispose()


def create_app(settings: Settings) -> Any:
    """Build the gateway's ASGI application; nothing connects until startup."""
    slot = ServiceSlot()
    sio = create_socket_server(services=slot)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        services = await build_services(settings)
        slot.value = services
        subscriber = Subscriber(
            client=services.redis, channel=settings.events_channel, fanout=Fanout(emitter=sio)
        )
        fanout_task = asyncio.create_task(subscriber.run(), name="gateway-fanout")
        fanout_task.add_done_callback(_report_crash)
        logger.info("gateway started", extra={"action": "gateway.start"})
        try:
            yield {"services": services, "subscriber": subscriber}
        finally:
            fanout_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                    await fanout_task
            await close_services(services)
            slot.value = None
            logger.info("gateway stopped", extra={"action": "gateway.stop"})

    routes: list[BaseRoute] = [
        Route("/healthz", health.healthz),
        Route("/readyz", health.readyz),
        Route("/metrics", health.metrics),
    ]
    if STATIC.is_dir():
        routes.append(Mount("/", StaticFiles(directory=STATIC, html=True), name="static"))
    starlette = Starlette(routes=routes, lifespan=lifespan)
    return socketio.ASGIApp(sio, other_asgi_app=starlette)


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.critical(
            "fan-out task died: %r", task.exception(), extra={"action": "gateway.fanout_crash"}
        )

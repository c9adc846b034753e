"""``create_app(settings)``: the ASGI app — Starlette routes plus the Socket.IO server.

Engines, clients and the producer are built in the lifespan and reach HTTP
handlers through ``request.state``; the fan-out subscriber, the ephemeral
(typing, presence) subscriber, the presence heartbeat and the sweeper are named
tasks the lifespan supervises (restarted with backoff after any error, see
``gateway.supervisor``) and cancels on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import redis.backoff
from redis.asyncio.retry import Retry
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway import api, health, replies, widget_settings
from gateway.assets import AssetCatalog
from gateway.broadcast import Broadcast
from gateway.clients import ClientRegistry
from gateway.ephemeral import EphemeralBus, EphemeralDelivery, ephemeral_channel
from gateway.fanout import Fanout
from gateway.limits import SocketLimits
from gateway.presence import Presence
from gateway.project_cache import ProjectCache
from gateway.ratelimit import DistinctLimiter, RateLimiter
from gateway.revocation import AgentAccess, revocation_channel
from gateway.routing import EngineRouter
from gateway.services import Services
from gateway.sockets import create_socket_server
from gateway.subscription import ChannelSubscription
from gateway.supervisor import Supervisor
from gateway.tokens import TokenSigner
from gateway.typing_indicators import TypingIndicators
from parley.settings import Settings
from persistence.activity import Activity
from persistence.conversations import Conversations
from persistence.database import create_engine
from persistence.directory import Directory
from persistence.history import History
from streams.producer import KafkaEventProducer
from streams.security import KafkaSecurity

logger = logging.getLogger("parley.gateway")

REDIS_TIMEOUT = 2.0  # seconds for a Redis command to answer
REDIS_POOL_SIZE = 200  # connections; a command waits up to REDIS_TIMEOUT for one
SHUTDOWN_TIMEOUT = 5.0  # seconds the background tasks get to stop
# The whole lifespan shutdown (tasks, presence, producer flush) shares one budget.
# With Kubernetes' preStop (5 s) and uvicorn's graceful close (GRACEFUL_CLOSE,
# 5 s) it fits the pod's 30 s grace period with room to spare: see docker/README.md.
SHUTDOWN_BUDGET = 8.0  # seconds
GRACEFUL_CLOSE = 5  # seconds uvicorn gives open requests and sockets
SUBSCRIPTION_PROTOCOL = 2  # RESP version of the pub/sub connection (see subscription_client)
STATIC = Path(__file__).parent / "static"
SOCKET_IO_PATH = "socket.io"  # where Socket.IO clients connect (/socket.io/)


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
    # Hundreds of sockets check limits and presence at once. redis-py's default pool
    # refuses the 101st concurrent command (MaxConnectionsError), which turned the
    # rate limit off under load; a blocking pool makes a command wait for a connection.
    # from_pool: the client owns the pool, so aclose() closes its connections too.
    client = aioredis.Redis.from_pool(
        aioredis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=REDIS_POOL_SIZE,
            timeout=REDIS_TIMEOUT,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            health_check_interval=10,
        )
    )
    producer = KafkaEventProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        visitor_topic=settings.visitor_topic,
        agent_topic=settings.agent_topic,
        security=KafkaSecurity.from_settings(settings),
    )
    try:
        await producer.start()
    except Exception:
        await client.aclose()
        await engine.dispose()
        raise
    directory = Directory(engine=engine)
    return Services(
        engine=engine,
        redis=client,
        producer=producer,
        directory=directory,
        projects=ProjectCache(directory=directory),
        history=History(engine=engine),
        activity=Activity(engine=engine),
        conversations=Conversations(engine=engine),
        limiter=RateLimiter(
            client=client, limit=settings.rate_limit_count, window=settings.rate_limit_window
        ),
        new_visitors=DistinctLimiter(
            client=client,
            limit=settings.new_visitor_limit,
            window=settings.new_visitor_window,
            prefix=f"{settings.events_channel}:new-visitors:",
        ),
        signer=TokenSigner(secret=settings.secret, ttl=settings.token_ttl),
        ephemeral=EphemeralBus(client=client, channel=ephemeral_channel(settings.events_channel)),
        presence=Presence(
            client=client,
            # One deployment's gateways share its events channel, so its name
            # scopes presence keys too (and isolates each test's).
            namespace=f"{settings.events_channel}:presence",
            channel=ephemeral_channel(settings.events_channel),
            ttl=settings.presence_ttl,
            gateway_id=uuid.uuid4().hex,
        ),
    )


def subscription_client(redis_url: str) -> aioredis.Redis:
    """The client the two subscriptions use: it never reconnects behind their back.

    redis-py retries a dropped pub/sub connection and resubscribes silently;
    what was published meanwhile is lost and nobody would know. Without
    retries the drop reaches ``ChannelSubscription``, which resubscribes and
    then tells the sockets to catch up.

    RESP2: under RESP3 (redis-py's default) every message arrives as a push
    notification, and redis-py's push handler formats each one into a debug log
    line whether or not debug is on (8 % of the fan-out's CPU in a profile).
    """
    return aioredis.Redis.from_url(
        redis_url,
        protocol=SUBSCRIPTION_PROTOCOL,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        health_check_interval=10,
        retry=Retry(redis.backoff.NoBackoff(), 0),
    )


async def close_services(services: Services) -> None:
    await services.producer.stop()
    await services.redis.aclose()
    await services.engine.dispose()


def create_app(settings: Settings) -> Any:
    """Build the gateway's ASGI application; nothing connects until startup."""
    slot = ServiceSlot()
    clients = ClientRegistry()
    typing = TypingIndicators(clients=clients, services=slot, timeout=settings.typing_timeout)
    sio = create_socket_server(
        services=slot,
        clients=clients,
        typing=typing,
        limits=SocketLimits.from_settings(settings),
        transports=settings.socket_transports,
    )
    access = AgentAccess(sio=sio, clients=clients, services=slot)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        services = await build_services(settings)
        slot.value = services
        assert settings.redis_url is not None
        listening = subscription_client(settings.redis_url)
        # Relayed and ephemeral events go out through one Broadcast: encoded once per
        # event, queued to each local socket without a task per recipient.
        broadcast = Broadcast(server=sio)
        fanout = Fanout(emitter=broadcast)
        subscriber = ChannelSubscription(
            client=listening,
            channel=settings.events_channel,
            deliver=fanout.deliver,
            name="fanout",
            # What was relayed while the subscription was down reached nobody here.
            on_resubscribed=fanout.resync,
        )
        ephemeral = ChannelSubscription(
            client=listening,
            channel=services.ephemeral.channel,
            deliver=EphemeralDelivery(emitter=broadcast).deliver,
            name="ephemeral",
        )
        presence = services.presence
        supervisor = Supervisor()
        supervisor.start("gateway-fanout", subscriber.run)
        supervisor.start("gateway-ephemeral", ephemeral.run)
        supervisor.start("gateway-presence-heartbeat", presence.run_heartbeat)
        supervisor.start("gateway-presence-sweeper", presence.run_sweeper)
        # Revocation notices from `parley agent revoke|remove`, and the timed backstop.
        revocations = ChannelSubscription(
            client=listening,
            channel=revocation_channel(settings.events_channel),
            deliver=access.deliver,
            name="revocation",
        )
        supervisor.start("gateway-revocation", revocations.run)
        supervisor.start(
            "gateway-agent-recheck",
            functools.partial(access.run_backstop, interval=settings.agent_recheck_interval),
        )
        logger.info("gateway started", extra={"action": "gateway.start"})
        try:
            yield {"services": services, "subscriber": subscriber, "fanout": fanout}
        finally:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + SHUTDOWN_BUDGET
            # Tasks first: a heartbeat after presence.close() would revive this gateway.
            await supervisor.stop(SHUTDOWN_TIMEOUT)
            # Then tell the others now what they would otherwise learn after the TTL.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await typing.close()
                    await presence.close()
            try:
                # The producer's flush gets what is left; a send it cuts short was
                # never acked, so its client resends it with the same tempId.
                async with asyncio.timeout_at(max(deadline, loop.time() + 1)):
                    await listening.aclose()
                    await close_services(services)
            except TimeoutError:
                logger.warning(
                    "shutdown budget spent; closing anyway", extra={"action": "gateway.stop_late"}
                )
            slot.value = None
            logger.info("gateway stopped", extra={"action": "gateway.stop"})

    routes: list[BaseRoute] = [
        Route("/healthz", health.healthz),
        Route("/readyz", health.readyz),
        Route("/metrics", health.metrics),
        *replies.routes,
        *api.routes,
        *widget_settings.routes,
        *AssetCatalog().routes(),
    ]
    if STATIC.is_dir():
        routes.append(Mount("/", StaticFiles(directory=STATIC, html=True), name="static"))
    starlette = Starlette(routes=routes, lifespan=lifespan)
    # socketio.ASGIApp would add a coroutine frame per open socket (its handle_request
    # only hands over to Engine.IO's), and engineio.ASGIApp one more: EngineRouter
    # routes as engineio.ASGIApp does, without a coroutine of its own (gateway.routing).
    return EngineRouter(engine=sio.eio, other=starlette, path=SOCKET_IO_PATH)

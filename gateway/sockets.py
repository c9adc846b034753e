"""The Socket.IO server: one namespace, where the connect ``auth`` decides the role.

``auth {token}`` is a dashboard; ``auth {projectId, visitorUid}`` (or
``?projectId=`` in the query string, as the reference widget sends it) is a
visitor. Handlers run one at a time per socket (``async_handlers=False``), so one
socket's events are handled in the order they arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import socketio
from prometheus_client import Gauge

from gateway.clients import ClientRegistry
from gateway.dashboards import DashboardHandlers
from gateway.errors import GatewayError
from gateway.packets import BoundedServer
from gateway.services import Services
from gateway.typing_indicators import TypingIndicators
from gateway.visitors import VisitorHandlers
from parley.settings import DEFAULT_SOCKET_TRANSPORTS

logger = logging.getLogger("parley.sockets")

MAX_PAYLOAD = 1_000_000  # bytes per Socket.IO packet; larger packets close the socket
CONNECTED = Gauge("parley_gateway_sockets", "Sockets connected to this gateway")


def create_socket_server(
    *,
    services: Callable[[], Services],
    clients: ClientRegistry | None = None,
    typing: TypingIndicators | None = None,
    transports: tuple[str, ...] = DEFAULT_SOCKET_TRANSPORTS,
) -> socketio.AsyncServer:
    """``clients`` and ``typing`` come from the caller when its lifespan must reach them."""
    sio = BoundedServer(
        async_mode="asgi",
        transports=list(transports),
        # Origins are checked per project at connect, against the project's list.
        cors_allowed_origins="*",
        async_handlers=False,
        max_http_buffer_size=MAX_PAYLOAD,
        logger=False,
        engineio_logger=False,
    )
    clients = clients if clients is not None else ClientRegistry()
    if typing is None:
        typing = TypingIndicators(clients=clients, services=services)
    visitors = VisitorHandlers(sio=sio, clients=clients, services=services)
    dashboards = DashboardHandlers(sio=sio, clients=clients, services=services)

    async def connect(sid: str, environ: Mapping[str, Any], auth: Any = None) -> None:
        credentials = auth if isinstance(auth, dict) else {}
        try:
            if "token" in credentials:
                await dashboards.connect(sid, environ, credentials)
            else:
                await visitors.connect(sid, environ, credentials)
        except GatewayError as exc:
            logger.info("refused a connection: %s", exc.message, extra={"action": "socket.refused"})
            # The client sees err.message and err.data = {code, message}.
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, exc.as_ack()["error"]
            ) from None
        CONNECTED.inc()

    async def disconnect(sid: str, *_: Any) -> None:
        if clients.remove(sid) is not None:
            CONNECTED.dec()
        await typing.forget(sid)
        try:
            presence = services().presence
        except RuntimeError:
            return  # the gateway is stopping; Presence.close() already let go of its sockets
        await presence.detach(sid)

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    sio.on("identify", visitors.identify)
    sio.on("sendMessage", visitors.send_message)
    sio.on("joinProjectRoom", dashboards.join_project_room)
    sio.on("sync", dashboards.sync)
    sio.on("sendReply", dashboards.send_reply)
    sio.on("markRead", visitors.mark_read)
    sio.on("markDelivered", visitors.mark_delivered)
    sio.on("updateContext", visitors.update_context)
    sio.on("visitorIsTyping", typing.visitor_is_typing)
    sio.on("agentTyping", typing.agent_typing)
    return sio

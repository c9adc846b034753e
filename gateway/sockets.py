"""The Socket.IO server: one namespace, where the connect ``auth`` decides the role.

``auth {token}`` is a dashboard; ``auth {projectId, visitorUid, visitorSignature?}``
(or ``?projectId=`` in the query string, as the reference widget sends it) is a
visitor. Handlers run one at a time per socket (``async_handlers=False``), so one
socket's events are handled in the order they arrived.

Before any role's handler runs, the client address passes its connect limits,
and every event spends from the socket's budget (:mod:`gateway.limits`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import socketio
from prometheus_client import Gauge

from gateway import codec
from gateway.clients import ClientRegistry
from gateway.dashboards import DashboardHandlers
from gateway.errors import GatewayError, RateLimited
from gateway.forms import submit_form
from gateway.limits import SocketLimits, client_address
from gateway.packets import BoundedServer
from gateway.services import Services
from gateway.typing_indicators import TypingIndicators
from gateway.visitors import VisitorHandlers
from parley.settings import DEFAULT_SOCKET_TRANSPORTS, Settings

logger = logging.getLogger("parley.sockets")

MAX_PAYLOAD = 1_000_000  # bytes per Socket.IO packet; larger packets close the socket
CONNECTED = Gauge("parley_gateway_sockets", "Sockets connected to this gateway")

Handler = Callable[..., Awaitable[dict[str, Any]]]


def create_socket_server(
    *,
    services: Callable[[], Services],
    clients: ClientRegistry | None = None,
    typing: TypingIndicators | None = None,
    limits: SocketLimits | None = None,
    transports: tuple[str, ...] = DEFAULT_SOCKET_TRANSPORTS,
) -> socketio.AsyncServer:
    """``clients`` and ``typing`` come from the caller when its lifespan must reach them."""
    limits = limits if limits is not None else SocketLimits.from_settings(Settings())
    sio = BoundedServer(
        async_mode="asgi",
        transports=list(transports),
        # Origins are checked per project at connect, against the project's list.
        cors_allowed_origins="*",
        async_handlers=False,
        json=codec,
        max_http_buffer_size=MAX_PAYLOAD,
        logger=False,
        engineio_logger=False,
    )
    clients = clients if clients is not None else ClientRegistry()
    if typing is None:
        typing = TypingIndicators(clients=clients, services=services)
    visitors = VisitorHandlers(
        sio=sio, clients=clients, services=services, context_throttle=limits.context
    )
    dashboards = DashboardHandlers(sio=sio, clients=clients, services=services)

    async def connect(sid: str, environ: Mapping[str, Any], auth: Any = None) -> None:
        credentials = auth if isinstance(auth, dict) else {}
        address = client_address(environ, trusted_proxies=limits.trusted_proxies)
        try:
            limits.addresses.admit(sid, address)
            try:
                if "token" in credentials:
                    await dashboards.connect(sid, environ, credentials)
                else:
                    await visitors.connect(sid, environ, credentials, address=address)
            except BaseException:
                limits.addresses.release(sid)
                clients.remove(sid)
                raise
        except GatewayError as exc:
            logger.info(
                "refused a connection from %s: %s",
                address,
                exc.message,
                extra={"action": "socket.refused"},
            )
            # The client sees err.message and err.data = {code, message}.
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, exc.as_ack()["error"]
            ) from None
        CONNECTED.inc()

    async def disconnect(sid: str, *_: Any) -> None:
        if clients.remove(sid) is not None:
            CONNECTED.dec()
        limits.forget(sid)
        await typing.forget(sid)
        try:
            presence = services().presence
        except RuntimeError:
            return  # the gateway is stopping; Presence.close() already let go of its sockets
        await presence.detach(sid)

    def budgeted(event: str, handler: Handler) -> Handler:
        async def run(sid: str, *args: Any) -> dict[str, Any]:
            try:
                limits.events.spend(sid, event)
            except RateLimited as exc:
                ack = exc.as_ack()
                if event == "joinProjectRoom":  # its ack predates {ok, error}; keep both
                    ack.update(status="error", message=exc.message)
                return ack
            return await handler(sid, *args)

        return run

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    events: dict[str, Handler] = {
        "identify": visitors.identify,
        "sendMessage": visitors.send_message,
        "joinProjectRoom": dashboards.join_project_room,
        "sync": dashboards.sync,
        "sendReply": dashboards.send_reply,
        "markRead": visitors.mark_read,
        "markDelivered": visitors.mark_delivered,
        "updateContext": visitors.update_context,
        "visitorIsTyping": typing.visitor_is_typing,
        "agentTyping": typing.agent_typing,
        "submitForm": submit_form,
    }
    for event, handler in events.items():
        sio.on(event, budgeted(event, handler))
    return sio

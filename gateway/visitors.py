"""Visitor sockets: connect, ``identify``, ``sendMessage``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import Counter

from gateway import identity, validation
from gateway.clients import ClientRegistry, VisitorClient
from gateway.errors import (
    Forbidden,
    GatewayError,
    InvalidPayload,
    NotIdentified,
    RateLimited,
    Unavailable,
)
from gateway.fanout import visitor_room
from gateway.limits import Throttle
from gateway.services import Services
from persistence.errors import DatabaseUnavailable, NotFound
from streams.errors import BrokerUnavailable
from streams.events import VisitorMessage

logger = logging.getLogger("parley.visitors")

ACCEPTED = Counter(
    "parley_gateway_messages_accepted_total", "Visitor messages the broker confirmed"
)
REJECTED = Counter("parley_gateway_messages_rejected_total", "Visitor messages refused", ["code"])


class VisitorHandlers:
    """Socket.IO handlers for the widget side.

    A socket's visitorUid is bound once, from the connect ``auth`` or by its first
    ``identify``, and never changes: a uid is a visitor's only credential.
    """

    def __init__(
        self,
        *,
        sio: Any,
        clients: ClientRegistry,
        services: Callable[[], Services],
        context_throttle: Throttle,
    ) -> None:
        self._sio = sio
        self._clients = clients
        self._services = services
        self._context_throttle = context_throttle

    async def connect(
        self, sid: str, environ: Mapping[str, Any], auth: dict[str, Any], *, address: str
    ) -> None:
        """Admit a widget whose project exists and whose Origin the project allows."""
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "visitorUid" in query:
            # A uid in a URL ends up in proxy and server logs: refuse it loudly.
            raise InvalidPayload("send visitorUid in the connect auth, never in the URL")
        raw_project = auth.get("projectId", (query.get("projectId") or [None])[0])
        if raw_project is None:
            raise InvalidPayload("projectId is required (auth or query string)")
        project_id = validation.project_id(raw_project)
        raw_uid = auth.get("visitorUid")
        uid = identity.visitor_uid(raw_uid) if raw_uid is not None else None
        services = self._services()
        try:
            project = await services.projects.get(project_id)
        except NotFound:
            raise Forbidden(f"project {project_id} does not exist") from None
        except DatabaseUnavailable:
            raise Unavailable("the service is temporarily unavailable; retry shortly") from None
        origin = environ.get("HTTP_ORIGIN")
        if not project.allows_origin(origin):
            raise Forbidden(f"origin {origin or '(none)'} is not allowed for this project")
        if project.require_identity:
            identity.verify(
                secret=project.identity_secret, uid=uid, signature=auth.get("visitorSignature")
            )
        client = VisitorClient(project_id=project_id, visitor_uid="", address=address)
        if uid is not None:
            await self._admit_visitor(client, uid)
        self._clients.add(sid, client)
        if uid is not None:
            await self._bind(sid, client, uid)

    async def _admit_visitor(self, client: VisitorClient, uid: str) -> None:
        """Each address may bring only so many distinct visitors to a project per window."""
        retry_after = await self._services().new_visitors.check(
            f"{client.project_id}:{client.address}", uid
        )
        if retry_after:
            raise RateLimited(
                "too many new visitors from your address; retry later", retryAfter=retry_after
            )

    async def _bind(self, sid: str, client: VisitorClient, uid: str) -> None:
        client.visitor_uid = uid
        client.identified = True
        await self._sio.enter_room(sid, visitor_room(client.project_id, uid))
        # Never raises: a Redis outage costs presence, not the connection.
        await self._services().presence.attach(sid, project_id=client.project_id, visitor_uid=uid)

    def _visitor(self, sid: str) -> VisitorClient:
        client = self._clients.get(sid)
        if not isinstance(client, VisitorClient):
            raise NotIdentified("this socket is not a visitor connection")
        return client

    async def identify(self, sid: str, *args: Any) -> dict[str, Any]:
        """``identify {projectId?, visitorUid?, lastSeq?}`` → ``conversationHistory {messages}``.

        Binds the uid when the socket has none yet; never switches it (``forbidden``).
        """
        try:
            client = self._visitor(sid)
            body = validation.require_object(validation.single_payload(args))
            project_id = validation.project_id(body.get("projectId", client.project_id))
            if project_id != client.project_id:
                raise Forbidden("projectId differs from the one this socket connected with")
            raw_uid = body.get("visitorUid")
            if raw_uid is None and not client.identified:
                raise InvalidPayload("visitorUid is required")
            uid = client.visitor_uid if raw_uid is None else identity.visitor_uid(raw_uid)
            last_seq = body.get("lastSeq")
            after = None if last_seq is None else validation.sequence(last_seq, "lastSeq")
            if client.identified:
                if uid != client.visitor_uid:
                    raise Forbidden("this connection is bound to another visitorUid")
            else:
                await self._admit_visitor(client, uid)
                await self._bind(sid, client, uid)
            try:
                # With lastSeq, only what the widget missed; without, the last 50.
                messages = await self._services().history.visitor_history(
                    project_id=project_id, visitor_uid=uid, after_seq=after
                )
            except DatabaseUnavailable:
                raise Unavailable("history is temporarily unavailable; retry shortly") from None
        except GatewayError as exc:
            return exc.as_ack()
        await self._sio.emit("conversationHistory", {"messages": messages}, to=sid)
        return {"ok": True}

    async def send_message(self, sid: str, *args: Any) -> dict[str, Any]:
        """``sendMessage`` → acked ``{"ok": true}`` once the broker confirmed the write."""
        try:
            client = self._visitor(sid)
            if not client.identified:
                raise NotIdentified("send identify {projectId, visitorUid} first")
            message = validation.outgoing_message(validation.single_payload(args))
            services = self._services()
            subject = f"{client.project_id}:{client.visitor_uid}"
            retry_after = await services.limiter.check(subject)
            if retry_after:
                raise RateLimited(
                    f"too many messages; retry in {retry_after}s", retryAfter=retry_after
                )
            event = VisitorMessage(
                project_id=client.project_id,
                visitor_uid=client.visitor_uid,
                temp_id=message.temp_id,
                content=message.content,
                session_metadata=message.session_metadata,
            )
            try:
                await services.producer.send_visitor_message(event)
            except BrokerUnavailable:
                raise Unavailable(
                    "message not accepted: the queue is unavailable; retry with the same tempId"
                ) from None
        except GatewayError as exc:
            REJECTED.labels(exc.code).inc()
            return exc.as_ack()
        ACCEPTED.inc()
        return {"ok": True}

    async def mark_read(self, sid: str, *args: Any) -> dict[str, Any]:
        """``markRead {upToSeq}``: the widget showed agent messages up to that seq."""
        return await self._receipt(sid, args, read=True)

    async def mark_delivered(self, sid: str, *args: Any) -> dict[str, Any]:
        """``markDelivered {upToSeq}``: the widget received agent messages up to that seq."""
        return await self._receipt(sid, args, read=False)

    async def _receipt(self, sid: str, args: tuple[Any, ...], *, read: bool) -> dict[str, Any]:
        try:
            client = self._identified(sid)
            body = validation.require_object(validation.single_payload(args))
            up_to = validation.sequence(body.get("upToSeq"), "upToSeq")
            activity = self._services().activity
            report = activity.visitor_read if read else activity.visitor_received
            try:
                await report(
                    project_id=client.project_id, visitor_uid=client.visitor_uid, up_to_seq=up_to
                )
            except DatabaseUnavailable:
                raise Unavailable("temporarily unavailable; retry shortly") from None
        except GatewayError as exc:
            return exc.as_ack()
        return {"ok": True}

    async def update_context(self, sid: str, *args: Any) -> dict[str, Any]:
        """``updateContext {currentUrl, currentTitle?}``: the page the visitor is on."""
        try:
            client = self._identified(sid)
            body = validation.require_object(validation.single_payload(args))
            url = validation.page_url(body.get("currentUrl"))
            title = validation.page_title(body.get("currentTitle"))
            if url == client.last_context_url:
                # Each stored change writes a row and reaches every dashboard; a repeat
                # of the page already stored is worth neither.
                return {"ok": True, "stored": False}
            self._context_throttle.check(sid)
            try:
                conversation = await self._services().activity.update_context(
                    project_id=client.project_id,
                    visitor_uid=client.visitor_uid,
                    url=url,
                    title=title,
                )
            except DatabaseUnavailable:
                raise Unavailable("temporarily unavailable; retry shortly") from None
        except GatewayError as exc:
            return exc.as_ack()
        # Before the first message there is no conversation to attach the page to.
        if conversation is not None:
            client.last_context_url = url
        return {"ok": True, "stored": conversation is not None}

    def _identified(self, sid: str) -> VisitorClient:
        client = self._visitor(sid)
        if not client.identified:
            raise NotIdentified("send identify {projectId, visitorUid} first")
        return client

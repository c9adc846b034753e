"""Typing indicators: ``visitorIsTyping`` and ``agentTyping``, ephemeral, across gateways.

A socket's typing state reaches the other side through :class:`EphemeralBus`
(never stored, never through the broker). The gateway holding the typing
socket owns that state: it drops identical updates re-sent within the throttle
window, clears a flag nobody refreshed within the timeout, and sends
``isTyping: false`` when the socket closes mid-word.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

from prometheus_client import Counter

from gateway import validation
from gateway.clients import AgentClient, ClientRegistry, VisitorClient
from gateway.errors import Forbidden, GatewayError, NotIdentified, Unavailable
from gateway.fanout import project_room, visitor_room
from gateway.services import Services
from persistence.errors import DatabaseUnavailable, NotFound

logger = logging.getLogger("parley.typing")

TYPING_TIMEOUT = 5.0  # seconds a true flag lasts without a refresh
TYPING_THROTTLE = 0.5  # seconds within which an identical state is not re-broadcast
OK: dict[str, Any] = {"ok": True}

TYPING_UPDATES = Counter(
    "parley_gateway_typing_updates_total",
    "Typing updates received, by side and by what became of them",
    ["side", "outcome"],
)
TYPING_EXPIRED = Counter(
    "parley_gateway_typing_expired_total",
    "Typing flags cleared because no update came within the timeout",
    ["event"],
)


@dataclasses.dataclass(kw_only=True)
class _Typing:
    """What one socket last broadcast about one conversation."""

    event: str
    room: str
    payload: dict[str, Any]  # everything but isTyping
    is_typing: bool
    sent_at: float
    timer: asyncio.Task[None] | None = None

    def message(self) -> dict[str, Any]:
        return {**self.payload, "isTyping": self.is_typing}


class TypingIndicators:
    """Socket.IO handlers for typing, and the per-socket state behind them."""

    def __init__(
        self,
        *,
        clients: ClientRegistry,
        services: Callable[[], Services],
        timeout: float = TYPING_TIMEOUT,
        throttle: float = TYPING_THROTTLE,
    ) -> None:
        self._clients = clients
        self._services = services
        self._timeout = timeout
        self._throttle = throttle
        self._states: dict[str, dict[Hashable, _Typing]] = {}  # sid → target → state
        self._tasks: set[asyncio.Task[None]] = set()  # timers, kept from the GC

    async def visitor_is_typing(self, sid: str, *args: Any) -> dict[str, Any]:
        """``visitorIsTyping {isTyping}`` → ``visitorIsTyping`` to the project's dashboards."""
        try:
            client = self._clients.get(sid)
            if not isinstance(client, VisitorClient) or not client.identified:
                raise NotIdentified("send identify {projectId, visitorUid} first")
            body = validation.require_object(validation.single_payload(args))
            is_typing = validation.typing_flag(body.get("isTyping"))
            target = ("visitor", client.project_id, client.visitor_uid)
            if self._throttled(sid, target, is_typing):
                TYPING_UPDATES.labels("visitor", "throttled").inc()
                return OK
            try:
                conversation = await self._services().history.open_conversation(
                    project_id=client.project_id, visitor_uid=client.visitor_uid
                )
            except DatabaseUnavailable:
                raise Unavailable("temporarily unavailable; retry shortly") from None
        except GatewayError as exc:
            TYPING_UPDATES.labels("visitor", "rejected").inc()
            return exc.as_ack()
        if self._clients.get(sid) is not client:
            return OK  # the socket closed meanwhile; its disconnect already cleared it
        payload = {
            "conversationId": conversation.id if conversation is not None else None,
            "projectId": client.project_id,
            "visitorUid": client.visitor_uid,
        }
        state = _Typing(
            event="visitorIsTyping",
            room=project_room(client.project_id),
            payload=payload,
            is_typing=is_typing,
            sent_at=time.monotonic(),
        )
        TYPING_UPDATES.labels("visitor", "sent").inc()
        await self._broadcast(sid, target, state)
        return OK

    async def agent_typing(self, sid: str, *args: Any) -> dict[str, Any]:
        """``agentTyping {conversationId, isTyping}`` → ``agentIsTyping`` to the visitor's tabs."""
        try:
            client = self._clients.get(sid)
            if not isinstance(client, AgentClient):
                raise Forbidden("only dashboards send agentTyping")
            body = validation.require_object(validation.single_payload(args))
            conversation_id = validation.conversation_id(body.get("conversationId"))
            is_typing = validation.typing_flag(body.get("isTyping"))
            target = ("conversation", conversation_id)
            if self._throttled(sid, target, is_typing):
                TYPING_UPDATES.labels("agent", "throttled").inc()
                return OK
            services = self._services()
            try:
                route = await services.history.route(conversation_id)
                member = await services.directory.is_member(
                    agent_id=client.agent_id, project_id=route.project_id
                )
            except NotFound:
                member = False
            except DatabaseUnavailable:
                raise Unavailable("temporarily unavailable; retry shortly") from None
            if not member:
                # The same answer for "no such conversation": ids are not probed.
                raise Forbidden(f"conversation {conversation_id} is not in your projects")
        except GatewayError as exc:
            TYPING_UPDATES.labels("agent", "rejected").inc()
            return exc.as_ack()
        if self._clients.get(sid) is not client:
            return OK
        state = _Typing(
            event="agentIsTyping",
            room=visitor_room(route.project_id, route.visitor_uid),
            payload={"agentName": client.display_name},
            is_typing=is_typing,
            sent_at=time.monotonic(),
        )
        TYPING_UPDATES.labels("agent", "sent").inc()
        await self._broadcast(sid, target, state)
        return OK

    async def forget(self, sid: str) -> None:
        """The socket closed: stop its timers and clear any flag it left raised."""
        for state in (self._states.pop(sid, None) or {}).values():
            self._disarm(state)
            if state.is_typing:
                state.is_typing = False
                await self._publish(state)

    async def close(self) -> None:
        """On shutdown: clear every raised flag and stop every timer."""
        for sid in list(self._states):
            await self.forget(sid)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _throttled(self, sid: str, target: Hashable, is_typing: bool) -> bool:
        state = self._states.get(sid, {}).get(target)
        if state is None or state.is_typing != is_typing:
            return False
        if time.monotonic() - state.sent_at >= self._throttle:
            return False
        if is_typing:
            self._arm(sid, target, state)  # any update postpones the automatic clear
        return True

    async def _broadcast(self, sid: str, target: Hashable, state: _Typing) -> None:
        states = self._states.setdefault(sid, {})
        previous = states.get(target)
        if previous is not None:
            self._disarm(previous)
        states[target] = state
        if state.is_typing:
            self._arm(sid, target, state)
        await self._publish(state)

    def _arm(self, sid: str, target: Hashable, state: _Typing) -> None:
        self._disarm(state)
        task = asyncio.create_task(self._expire(sid, target, state), name=f"typing-timeout:{sid}")
        state.timer = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _disarm(state: _Typing) -> None:
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None

    async def _expire(self, sid: str, target: Hashable, state: _Typing) -> None:
        await asyncio.sleep(self._timeout)
        # From here on the clear is committed: a later update must not cancel
        # it halfway through publishing.
        state.timer = None
        if self._states.get(sid, {}).get(target) is not state or not state.is_typing:
            return
        state.is_typing = False
        state.sent_at = time.monotonic()
        TYPING_EXPIRED.labels(state.event).inc()
        await self._publish(state)

    async def _publish(self, state: _Typing) -> None:
        try:
            bus = self._services().ephemeral
        except RuntimeError:
            return  # the gateway is stopping; nobody is left to tell
        await bus.publish(state.event, state.room, state.message())

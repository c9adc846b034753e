"""Socket.IO clients as the widget and the dashboard use them, recording what arrives."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import socketio

# python-socketio gives up on a connect after 1 s by default; a loaded machine needs longer.
CONNECT_WAIT = 15.0  # seconds

VISITOR_EVENTS = [
    "conversationHistory",
    "messageSent",
    "newMessage",
    "agentReplied",
    "messagesRead",
    "agentIsTyping",
]
DASHBOARD_EVENTS = [
    "newMessage",
    "messageSent",
    "conversationUpdated",
    "messagesRead",
    "messagesDelivered",
    "visitorContextUpdated",
    "visitorIsTyping",
    "visitorStatusChanged",
]


class Recorder:
    """Collects every event a client receives, with its arrival time."""

    def __init__(self, client: socketio.AsyncClient, events: list[str]) -> None:
        self.client = client
        self.received: dict[str, list[tuple[float, Any]]] = {name: [] for name in events}
        for name in events:
            client.on(name, self._handler(name))

    def _handler(self, name: str) -> Any:
        async def handle(data: Any = None) -> None:
            self.received[name].append((time.perf_counter(), data))

        return handle

    def payloads(self, name: str) -> list[Any]:
        return [data for _, data in self.received[name]]

    async def wait_for(self, name: str, count: int, timeout: float = 20.0) -> list[Any]:
        """At least ``count`` ``name`` events, all received so far; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while len(self.received[name]) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{len(self.received[name])} of {count} {name!r} events after {timeout:g} s: "
                    f"{self.payloads(name)!r:.2000}"
                )
            await asyncio.sleep(0.01)
        return self.payloads(name)

    async def call(self, event: str, data: Any = None, timeout: float = 15.0) -> Any:
        return await self.client.call(event, data, timeout=timeout)

    async def close(self) -> None:
        await self.client.disconnect()


async def visitor(
    url: str,
    project_id: int,
    visitor_uid: str | None,
    *,
    headers: dict[str, str] | None = None,
    identify: bool = True,
    last_seq: int | None = None,
    auth: dict[str, Any] | None = None,
) -> Recorder:
    """A widget; its uid (a UUID) travels in the connect auth, never in the URL."""
    client = socketio.AsyncClient(reconnection=False)
    recorder = Recorder(client, VISITOR_EVENTS)
    if auth is None:
        auth = {"projectId": project_id}
        if visitor_uid is not None:
            auth["visitorUid"] = visitor_uid
    await client.connect(
        url, auth=auth, headers=headers or {}, transports=["websocket"], wait_timeout=CONNECT_WAIT
    )
    if identify and visitor_uid is not None:
        hello: dict[str, Any] = {"projectId": project_id, "visitorUid": visitor_uid}
        if last_seq is not None:
            hello["lastSeq"] = last_seq
        ack = await recorder.call("identify", hello)
        assert ack == {"ok": True}, ack
        await recorder.wait_for("conversationHistory", 1)
    return recorder


async def dashboard(url: str, token: str, project_id: int | None = None) -> Recorder:
    client = socketio.AsyncClient(reconnection=False)
    recorder = Recorder(client, DASHBOARD_EVENTS)
    await client.connect(
        url, auth={"token": token}, transports=["websocket"], wait_timeout=CONNECT_WAIT
    )
    if project_id is not None:
        ack = await recorder.call("joinProjectRoom", {"projectId": project_id})
        assert ack == {"status": "ok", "roomName": f"project:{project_id}"}, ack
    return recorder


async def refused(url: str, **connect: Any) -> Any:
    """Connect expecting a refusal; return the server's connect_error data."""
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", lambda data=None: errors.append(data))
    try:
        await client.connect(url, transports=["websocket"], wait_timeout=CONNECT_WAIT, **connect)
    except socketio.exceptions.ConnectionError:
        assert errors, "refused without an error payload"
        error = errors[0]
        return {"message": error["message"], **error.get("data", {})}
    await client.disconnect()
    raise AssertionError("the connection was accepted")

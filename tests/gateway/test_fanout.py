"""Turning relayed events into emits, once per event id; and the whole fan-out of a
gateway, from the Redis channel to real Socket.IO clients."""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis.asyncio as aioredis

from gateway.fanout import Fanout, RecentIds
from gateway.tokens import TokenSigner
from parley.settings import Settings
from persistence.directory import Directory, Project
from tests import clients
from tests.fakes import RecordingEmitter

MESSAGE = {
    "id": 11,
    "conversationId": 3,
    "projectId": 7,
    "visitorUid": "v-1",
    "seq": 4,
    "content": "hi",
    "fromCustomer": True,
    "senderType": "visitor",
    "status": "sent",
    "tempId": "0b8a3c39-8a0f-4a62-9df1-6c1b1a2f4d10",
    "createdAt": "2026-11-25T10:00:00Z",
}


def relayed(event_id: int) -> str:
    return json.dumps(
        {"eventId": event_id, "conversationId": 3, "type": "message.created", "message": MESSAGE}
    )


async def test_emits_ack_to_the_visitor_and_message_to_the_project() -> None:
    emitter = RecordingEmitter()
    await Fanout(emitter=emitter).deliver(relayed(1))
    assert emitter.emitted == [
        ("messageSent", {"tempId": MESSAGE["tempId"], "finalMessage": MESSAGE}, "visitor:7:v-1"),
        ("newMessage", MESSAGE, "project:7"),
    ]


async def test_a_republished_event_is_emitted_once() -> None:
    emitter = RecordingEmitter()
    fanout = Fanout(emitter=emitter)
    for event_id in (1, 2, 1, 2, 3):
        await fanout.deliver(relayed(event_id))
    assert len(emitter.emitted) == 6


async def test_malformed_events_are_dropped() -> None:
    emitter = RecordingEmitter()
    fanout = Fanout(emitter=emitter)
    for raw in ("not json", "[]", json.dumps({"eventId": 1}), json.dumps({"type": "x"})):
        await fanout.deliver(raw)
    await fanout.deliver(json.dumps({"eventId": 9, "type": "message.created", "message": "x"}))
    assert emitter.emitted == []


def test_recent_ids_forget_the_oldest() -> None:
    seen = RecentIds(size=2)
    assert seen.add(1) and seen.add(2) and not seen.add(1)
    assert seen.add(3)
    assert seen.add(1)


async def test_resync_reaches_every_socket_without_payload() -> None:
    emitter = RecordingEmitter()
    await Fanout(emitter=emitter).resync()
    # No room: python-socketio's in-memory manager sends it to this gateway's sockets only.
    assert emitter.emitted == [("resync", None, None)]


def relayed_to(event_id: int, project_id: int, visitor_uid: str, seq: int) -> str:
    message = {
        **MESSAGE,
        "id": event_id,
        "projectId": project_id,
        "visitorUid": visitor_uid,
        "seq": seq,
        "tempId": str(uuid.uuid4()),
    }
    return json.dumps(
        {"eventId": event_id, "conversationId": 3, "type": "message.created", "message": message}
    )


async def publish_all(settings: Settings, payloads: list[str]) -> None:
    """In one pipeline: the gateway finds them buffered together and drains them."""
    assert settings.redis_url is not None
    publisher = aioredis.Redis.from_url(settings.redis_url)
    try:
        async with publisher.pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.publish(settings.events_channel, payload)
            await pipe.execute()
    finally:
        await publisher.aclose()


def seqs(received: list[Any]) -> list[int]:
    return [message["seq"] for message in received]


async def test_every_dashboard_of_the_project_gets_each_event_once_in_order(
    settings: Settings,
    gateway_url: str,
    project: Project,
    agent_token: str,
    directory: Directory,
    signer: TokenSigner,
) -> None:
    other = await directory.create_project(name="Other")
    other_agent = await directory.add_agent(project_id=other.id, email="bo@other.test")
    dashboards = [await clients.dashboard(gateway_url, agent_token, project.id) for _ in range(2)]
    outsider = await clients.dashboard(gateway_url, signer.issue(other_agent.id), other.id)
    uid = str(uuid.uuid4())
    widget = await clients.visitor(gateway_url, project.id, uid)
    count = 400
    burst = [relayed_to(10_000 + n, project.id, uid, n) for n in range(count)]
    # Each one twice: the relay publishes at least once; the gateway drops repeats.
    await publish_all(settings, burst[: count // 2] + burst[: count // 2] + burst[count // 2 :])
    for dashboard in dashboards:
        assert seqs(await dashboard.wait_for("newMessage", count)) == list(range(count))
    acks = await widget.wait_for("messageSent", count)
    assert [ack["finalMessage"]["seq"] for ack in acks] == list(range(count))
    # Per socket, order holds: the outsider's first newMessage being its own project's
    # event means none of the burst reached it; the widget's next ack being its own
    # project's means the other project's event (same visitorUid) did not reach it.
    await publish_all(
        settings,
        [relayed_to(20_000, other.id, uid, 7), relayed_to(20_001, project.id, uid, count)],
    )
    assert seqs(await outsider.wait_for("newMessage", 1)) == [7]
    acks = await widget.wait_for("messageSent", count + 1)
    assert [ack["finalMessage"]["seq"] for ack in acks] == list(range(count + 1))
    # Acks of the gateway's own handlers still come back.
    joined = await dashboards[0].call("joinProjectRoom", {"projectId": project.id})
    assert joined == {"status": "ok", "roomName": f"project:{project.id}"}
    for dashboard in dashboards:
        assert seqs(await dashboard.wait_for("newMessage", count + 1)) == list(range(count + 1))
    for one in (*dashboards, outsider, widget):
        await one.close()


async def test_one_event_reaches_a_quiet_dashboard_before_any_ping(
    settings: Settings, gateway_url: str, project: Project, agent_token: str
) -> None:
    # A socket's writer runs only while something is queued; a broadcast that queued
    # around it left the frame waiting for the next ping (25 s). 10 s is well under it.
    dashboard = await clients.dashboard(gateway_url, agent_token, project.id)
    uid = str(uuid.uuid4())
    await publish_all(settings, [relayed_to(30_000, project.id, uid, 0)])
    assert seqs(await dashboard.wait_for("newMessage", 1, timeout=10.0)) == [0]
    await dashboard.close()

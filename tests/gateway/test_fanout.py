"""Turning relayed events into emits, once per event id."""

from __future__ import annotations

import json

from gateway.fanout import Fanout, RecentIds
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

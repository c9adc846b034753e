from __future__ import annotations

import json
import uuid

import pytest

from streams.errors import InvalidEvent
from streams.events import VisitorMessage


def test_round_trip_keeps_everything() -> None:
    event = VisitorMessage(
        project_id=3,
        visitor_uid="v-1",
        temp_id=str(uuid.uuid4()),
        content="héllo",
        session_metadata={"referrer": None, "landingPage": "/", "urlHistory": []},
    )
    back = VisitorMessage.from_json(event.to_json())
    assert back == event
    assert event.key == b"3:v-1"
    assert dict(event.headers) == {
        "event-id": event.event_id.encode(),
        "event-type": b"visitor.message",
    }
    assert json.loads(event.to_json())["content"] == "héllo"


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"\xff\xfe",
        b"[]",
        b'{"projectId": "3", "visitorUid": "v", "tempId": "x", "content": "c"}',
        b'{"projectId": true, "visitorUid": "v", "tempId": "x", "content": "c"}',
        json.dumps(
            {"projectId": 3, "visitorUid": "", "tempId": str(uuid.uuid4()), "content": "c"}
        ).encode(),
        json.dumps({"projectId": 3, "visitorUid": "v", "tempId": "nope", "content": "c"}).encode(),
        json.dumps(
            {"projectId": 3, "visitorUid": "v", "tempId": str(uuid.uuid4()), "content": " "}
        ).encode(),
        json.dumps(
            {
                "projectId": 3,
                "visitorUid": "v",
                "tempId": str(uuid.uuid4()),
                "content": "c",
                "sessionMetadata": [],
            }
        ).encode(),
    ],
)
def test_values_no_gateway_would_produce_are_invalid(raw: bytes | None) -> None:
    with pytest.raises(InvalidEvent):
        VisitorMessage.from_json(raw)


@pytest.mark.parametrize(
    "fields",
    [
        {"content": "lone \ud800"},
        {"session_metadata": {"referrer": "\udfff"}},
        {"session_metadata": {"n": float("nan")}},
        {"visitor_uid": "\ud800"},
    ],
)
def test_unencodable_events_raise_invalid_event(fields: dict[str, object]) -> None:
    values: dict[str, object] = {
        "project_id": 3,
        "visitor_uid": "v-1",
        "temp_id": str(uuid.uuid4()),
        "content": "hi",
        **fields,
    }
    event = VisitorMessage(**values)  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent):
        event.to_json()
        _ = event.key

from __future__ import annotations

import json
import uuid

import pytest

from streams.errors import InvalidEvent
from streams.events import AgentMessage, VisitorMessage


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


def visitor_value(**fields: object) -> dict[str, object]:
    return {
        "projectId": 3,
        "visitorUid": "v",
        "tempId": str(uuid.uuid4()),
        "content": "c",
        **fields,
    }


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (json.dumps(visitor_value(content="poison\u0000pill")).encode(), "content contains a NUL"),
        (
            json.dumps(visitor_value(sessionMetadata={"urlHistory": [{"title": "a\u0000"}]})),
            "sessionMetadata.urlHistory[0].title contains a NUL",
        ),
        (json.dumps(visitor_value(sessionMetadata={"a\u0000": 1})), "contains a NUL"),
        # The escape as a client's JSON carries it, and a raw one.
        (json.dumps(visitor_value(content="x\ud800y")), "content contains a lone surrogate"),
        (json.dumps(visitor_value(content="\udc00")), "content contains a lone surrogate"),
        (json.dumps(visitor_value(projectId=2**70)), "projectId is an integer out of range"),
        (json.dumps(visitor_value(projectId=-(2**63) - 1)), "projectId is an integer out of"),
        (
            json.dumps(visitor_value(sessionMetadata={"n": 2**64})),
            "sessionMetadata.n is an integer out of range",
        ),
        (
            json.dumps(visitor_value(sessionMetadata={"n": 1e999})),
            "sessionMetadata.n is not a finite number",
        ),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_values_postgresql_cannot_store_are_invalid(raw: bytes | str, why: str) -> None:
    with pytest.raises(InvalidEvent, match=why.replace("[", r"\[").replace("]", r"\]")):
        VisitorMessage.from_json(raw)


def test_storable_edges_are_accepted() -> None:
    raw = json.dumps(
        visitor_value(
            projectId=2**63 - 1,
            content="emoji \U0001f600 escaped as a surrogate pair",
            sessionMetadata={"n": -(2**63), "f": 1.5, "ok": True, "none": None},
        )
    )
    assert "\\ud83d\\ude00" in raw
    event = VisitorMessage.from_json(raw)
    assert event.content == "emoji \U0001f600 escaped as a surrogate pair"
    assert event.project_id == 2**63 - 1


def test_agent_replies_are_checked_the_same_way() -> None:
    raw = json.dumps(
        {
            "projectId": 3,
            "conversationId": 2**70,
            "visitorUid": "v",
            "agentId": 1,
            "tempId": str(uuid.uuid4()),
            "content": "c",
        }
    )
    with pytest.raises(InvalidEvent, match="conversationId is an integer out of range"):
        AgentMessage.from_json(raw)


@pytest.mark.parametrize(
    "written",
    [
        "0E0D3B7E-6F1C-4D6F-9A0B-4C7B1D2E3F40",
        "{0e0d3b7e-6f1c-4d6f-9a0b-4c7b1d2e3f40}",
        "0e0d3b7e6f1c4d6f9a0b4c7b1d2e3f40",
        "urn:uuid:0e0d3b7e-6f1c-4d6f-9a0b-4c7b1d2e3f40",
        "0e0d3b7e-6f1c-4d6f-9a0b-4c7b1d2e3f40",
    ],
)
def test_a_temp_id_is_stored_in_one_canonical_form(written: str) -> None:
    event = VisitorMessage.from_json(json.dumps(visitor_value(tempId=written)))
    assert event.temp_id == "0e0d3b7e-6f1c-4d6f-9a0b-4c7b1d2e3f40"

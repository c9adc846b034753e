"""Event records: the one place a topic value's shape is defined.

Values are plain JSON so any Kafka tool can read them; the event id and type
travel in headers too (``event-id``, ``event-type``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

from streams.errors import InvalidEvent

VISITOR_MESSAGE = "visitor.message"
HEADER_EVENT_ID = "event-id"
HEADER_EVENT_TYPE = "event-type"


@dataclasses.dataclass(frozen=True, kw_only=True)
class VisitorMessage:
    """A visitor's message, accepted by a gateway and not yet stored."""

    project_id: int
    visitor_uid: str
    temp_id: str
    content: str
    session_metadata: dict[str, Any] | None = None
    event_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    accepted_at: str = dataclasses.field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    )

    type = VISITOR_MESSAGE

    @property
    def key(self) -> bytes:
        """Partition key: one visitor's messages share a partition, so stay in order."""
        return f"{self.project_id}:{self.visitor_uid}".encode()

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (HEADER_EVENT_ID, self.event_id.encode()),
            (HEADER_EVENT_TYPE, self.type.encode()),
        ]

    def to_json(self) -> bytes:
        body = {
            "eventId": self.event_id,
            "type": self.type,
            "projectId": self.project_id,
            "visitorUid": self.visitor_uid,
            "tempId": self.temp_id,
            "content": self.content,
            "sessionMetadata": self.session_metadata,
            "acceptedAt": self.accepted_at,
        }
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> VisitorMessage:
        """Parse a topic value, rejecting anything a gateway would not have produced."""
        if raw is None:
            raise InvalidEvent("empty value")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidEvent(f"not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InvalidEvent("value is not a JSON object")
        project_id = body.get("projectId")
        visitor_uid = body.get("visitorUid")
        temp_id = body.get("tempId")
        content = body.get("content")
        metadata = body.get("sessionMetadata")
        if not isinstance(project_id, int) or isinstance(project_id, bool):
            raise InvalidEvent("projectId must be an integer")
        if not isinstance(visitor_uid, str) or not visitor_uid:
            raise InvalidEvent("visitorUid must be a non-empty string")
        if not isinstance(temp_id, str):
            raise InvalidEvent("tempId must be a string")
        try:
            temp_id = str(uuid.UUID(temp_id))
        except ValueError:
            raise InvalidEvent("tempId must be a UUID") from None
        if not isinstance(content, str) or not content.strip():
            raise InvalidEvent("content must be a non-empty string")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidEvent("sessionMetadata must be an object")
        return cls(
            project_id=project_id,
            visitor_uid=visitor_uid,
            temp_id=temp_id,
            content=content,
            session_metadata=metadata,
            event_id=str(body.get("eventId") or uuid.uuid4()),
            accepted_at=str(body.get("acceptedAt") or ""),
        )

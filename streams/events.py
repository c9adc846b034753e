"""Event records: the one place a topic value's shape is defined.

Values are plain JSON so any Kafka tool can read them; the event id and type
travel in headers too (``event-id``, ``event-type``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
import uuid
from typing import Any, ClassVar, NoReturn

from streams.errors import InvalidEvent

VISITOR_MESSAGE = "visitor.message"
AGENT_MESSAGE = "agent.message"
HEADER_EVENT_ID = "event-id"
HEADER_EVENT_TYPE = "event-type"
# PostgreSQL's bigint: ids beyond it cannot be looked up, let alone stored.
BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
# json.loads joins an escaped surrogate pair into one character, so any surrogate
# left in a decoded string is a lone one, which UTF-8 cannot encode.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# The form str(uuid.UUID(...)) gives; a value already in it needs no parsing.
CANONICAL_UUID = re.compile("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def partition_key(project_id: int, visitor_uid: str) -> bytes:
    """One visitor's messages and the replies to them share a partition, so stay in order."""
    try:
        return f"{project_id}:{visitor_uid}".encode()
    except UnicodeEncodeError:
        raise InvalidEvent("visitorUid is not valid Unicode") from None


def event_headers(event_id: str, event_type: str) -> list[tuple[str, bytes]]:
    return [(HEADER_EVENT_ID, event_id.encode()), (HEADER_EVENT_TYPE, event_type.encode())]


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Event:
    """What every topic value has: an id, when a gateway accepted it, its visitor's key."""

    project_id: int
    visitor_uid: str
    event_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    accepted_at: str = dataclasses.field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    )

    type: ClassVar[str]

    @property
    def key(self) -> bytes:
        return partition_key(self.project_id, self.visitor_uid)

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return event_headers(self.event_id, self.type)


def _encode(body: dict[str, Any]) -> bytes:
    """UTF-8 JSON; an InvalidEvent, never a UnicodeEncodeError, for what JSON cannot carry.

    Lone surrogates cannot be UTF-8, and NaN is not JSON (PostgreSQL's jsonb refuses it).
    """
    try:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except UnicodeEncodeError:
        raise InvalidEvent("the event holds text that is not valid Unicode") from None
    except ValueError as exc:
        raise InvalidEvent(f"the event is not JSON: {exc}") from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class VisitorMessage(_Event):
    """A visitor's message, accepted by a gateway and not yet stored."""

    temp_id: str
    content: str
    session_metadata: dict[str, Any] | None = None

    type: ClassVar[str] = VISITOR_MESSAGE

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
        return _encode(body)

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> VisitorMessage:
        """Parse a topic value, rejecting anything a gateway would not have produced."""
        body = _object(raw)
        metadata = body.get("sessionMetadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidEvent("sessionMetadata must be an object")
        return cls(
            project_id=_integer(body, "projectId"),
            visitor_uid=_text(body, "visitorUid"),
            temp_id=_uuid(body, "tempId"),
            content=_text(body, "content"),
            session_metadata=metadata,
            event_id=str(body.get("eventId") or uuid.uuid4()),
            accepted_at=str(body.get("acceptedAt") or ""),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class AgentMessage(_Event):
    """An agent's reply, accepted by a gateway and not yet stored."""

    conversation_id: int
    agent_id: int
    temp_id: str
    content: str

    type: ClassVar[str] = AGENT_MESSAGE

    def to_json(self) -> bytes:
        body = {
            "eventId": self.event_id,
            "type": self.type,
            "projectId": self.project_id,
            "conversationId": self.conversation_id,
            "visitorUid": self.visitor_uid,
            "agentId": self.agent_id,
            "tempId": self.temp_id,
            "content": self.content,
            "acceptedAt": self.accepted_at,
        }
        return _encode(body)

    @classmethod
    def from_json(cls, raw: bytes | str | None) -> AgentMessage:
        body = _object(raw)
        return cls(
            project_id=_integer(body, "projectId"),
            conversation_id=_integer(body, "conversationId"),
            visitor_uid=_text(body, "visitorUid"),
            agent_id=_integer(body, "agentId"),
            temp_id=_uuid(body, "tempId"),
            content=_text(body, "content"),
            event_id=str(body.get("eventId") or uuid.uuid4()),
            accepted_at=str(body.get("acceptedAt") or ""),
        )


def _object(raw: bytes | str | None) -> dict[str, Any]:
    if raw is None:
        raise InvalidEvent("empty value")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    except RecursionError:
        raise InvalidEvent("not JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidEvent("value is not a JSON object")
    _require_storable(body)
    return body


def _require_storable(body: dict[str, Any]) -> None:
    """Refuse what PostgreSQL cannot store, so it is dead-lettered before any transaction.

    Text and jsonb refuse NUL and lone surrogates (JSON may escape both:
    ``"\\u0000"``, ``"\\ud800"``); bigint columns refuse larger integers; jsonb
    refuses NaN and infinities.

    Every event the agent stores passes here, so the common case is checked
    without naming where each value sits; only a refused body is walked again
    to say where the offending value is.
    """
    if not _storable(body):
        _refuse_unstorable(body)


def _storable(body: dict[str, Any]) -> bool:
    """Whether every value of a decoded JSON body can be stored (types as json.loads makes)."""
    pending: list[Any] = [body]
    while pending:
        value = pending.pop()
        kind = type(value)
        if kind is str:
            if not _storable_text(value):
                return False
        elif kind is dict:
            for key, item in value.items():
                if not _storable_text(key):
                    return False
                pending.append(item)
        elif kind is list:
            pending.extend(value)
        elif kind is int:
            if not BIGINT_MIN <= value <= BIGINT_MAX:
                return False
        elif kind is float and not math.isfinite(value):
            return False
    return True


def _storable_text(text: str) -> bool:
    # An ASCII string holds no surrogate; isascii() costs nothing on a str.
    return "\x00" not in text and (text.isascii() or not LONE_SURROGATE.search(text))


def _refuse_unstorable(body: dict[str, Any]) -> NoReturn:
    """Raise InvalidEvent naming the first value of ``body`` PostgreSQL cannot store."""
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                _require_storable_text(path or "key", key)
                pending.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, str):
            _require_storable_text(path, value)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not BIGINT_MIN <= value <= BIGINT_MAX:
                raise InvalidEvent(f"{path} is an integer out of range")
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidEvent(f"{path} is not a finite number")
    raise InvalidEvent("the event holds a value that cannot be stored")


def _require_storable_text(path: str, text: str) -> None:
    if "\x00" in text:
        raise InvalidEvent(f"{path} contains a NUL character")
    if LONE_SURROGATE.search(text):
        raise InvalidEvent(f"{path} contains a lone surrogate")


def _integer(body: dict[str, Any], field: str) -> int:
    value = body.get(field)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidEvent(f"{field} must be an integer")
    return value


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidEvent(f"{field} must be a non-empty string")
    return value


def _uuid(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise InvalidEvent(f"{field} must be a string")
    if CANONICAL_UUID.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidEvent(f"{field} must be a UUID") from None

"""Checks on what clients send; every failure is an :class:`InvalidPayload` saying why."""

from __future__ import annotations

import dataclasses
import math
import re
import uuid
from typing import Any

from gateway.errors import InvalidPayload

MAX_CONTENT_LENGTH = 5_000  # characters, after trimming
MAX_URL_HISTORY = 50  # entries
MAX_VISITOR_UID_LENGTH = 128  # characters
MAX_URL_LENGTH = 2_048  # characters
MAX_TITLE_LENGTH = 512  # characters
MAX_DEPTH = 32  # levels of nested objects and lists in one payload
MAX_DECIMAL_DIGITS = 19  # a bigint has at most 19 digits
BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
# ASCII only: str.isdigit() also accepts "²" and Arabic-Indic digits, which int()
# then refuses or reads.
_DECIMAL = re.compile(rf"[0-9]{{1,{MAX_DECIMAL_DIGITS}}}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class OutgoingMessage:
    content: str
    temp_id: str
    session_metadata: dict[str, Any] | None


def single_payload(args: tuple[Any, ...]) -> Any:
    """Socket.IO passes whatever the client sent as positional arguments.

    The whole payload must be :func:`storable`, whichever of its fields the event reads.
    """
    if len(args) != 1:
        raise InvalidPayload("expected exactly one payload object")
    return storable(args[0])


def storable(value: Any, field: str = "payload") -> Any:
    """Return ``value`` if PostgreSQL can store every part of it, else raise InvalidPayload.

    PostgreSQL refuses NUL in text and jsonb, UTF-8 cannot encode a lone surrogate,
    a bigint stops at 2**63 - 1, and jsonb has no NaN or infinity. A value that
    passed the gateway but fails in the database would stall the persistence agent,
    so everything a client sends is checked here, iteratively, to any depth.
    """
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise InvalidPayload(f"{field} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, str):
            _check_text(item, field)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not BIGINT_MIN <= item <= BIGINT_MAX:
                raise InvalidPayload(f"{field} holds an integer outside the 64-bit range")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidPayload(f"{field} holds a number that is not finite")
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise InvalidPayload(f"{field} has a key that is not a string")
                _check_text(key, field)
                pending.append((child, depth + 1))
        elif isinstance(item, list | tuple):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, bytes | bytearray | memoryview):
            raise InvalidPayload(f"{field} holds binary data; send text")
        else:
            raise InvalidPayload(f"{field} holds a value that is not JSON")
    return value


def _check_text(text: str, field: str) -> None:
    if "\x00" in text:
        raise InvalidPayload(f"{field} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPayload(f"{field} contains a lone surrogate (invalid Unicode)") from None


def _decimal(value: str) -> int | None:
    """Plain ASCII decimal text as an int, or None (int() would take "١٢" or " +1_0")."""
    text = value.strip(" \t")
    return int(text) if _DECIMAL.fullmatch(text) else None


def require_object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise InvalidPayload("payload must be an object")
    return payload


def project_id(value: Any) -> int:
    """Accept 7 or "7" (query strings are text); reject everything else."""
    if isinstance(value, bool):
        raise InvalidPayload("projectId must be an integer")
    parsed = _decimal(value) if isinstance(value, str) else value
    if not isinstance(parsed, int):
        raise InvalidPayload("projectId must be an integer")
    if not 0 < parsed < 2**63:
        raise InvalidPayload("projectId is out of range")
    return parsed


def integer(value: Any, field: str, *, low: int, high: int) -> int:
    """An integer in ``[low, high]``, given as a number or as decimal text (query strings)."""
    if isinstance(value, str):
        value = _decimal(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidPayload(f"{field} must be an integer from {low} to {high}")
    return value


def visitor_uid(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidPayload("visitorUid must be a non-empty string")
    uid: str = value.strip()
    if len(uid) > MAX_VISITOR_UID_LENGTH:
        raise InvalidPayload(f"visitorUid is longer than {MAX_VISITOR_UID_LENGTH} characters")
    if not uid.isprintable():
        raise InvalidPayload("visitorUid contains control characters")
    return uid


def sequence(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise InvalidPayload(f"{field} must be a non-negative integer")
    return value


def page_url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidPayload("currentUrl must be a non-empty string")
    if len(value) > MAX_URL_LENGTH:
        raise InvalidPayload(f"currentUrl is longer than {MAX_URL_LENGTH} characters")
    _check_text(value, "currentUrl")
    return value.strip()


def page_title(value: Any) -> str | None:
    return _optional_text(value, "currentTitle", MAX_TITLE_LENGTH)


def _optional_text(value: Any, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidPayload(f"{field} must be a string")
    if len(value) > limit:
        raise InvalidPayload(f"{field} is longer than {limit} characters")
    _check_text(value, field)
    return value


def session_metadata(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidPayload("sessionMetadata must be an object")
    history = value.get("urlHistory", [])
    if history is None:
        history = []
    if not isinstance(history, list):
        raise InvalidPayload("sessionMetadata.urlHistory must be a list")
    if len(history) > MAX_URL_HISTORY:
        raise InvalidPayload(f"sessionMetadata.urlHistory has more than {MAX_URL_HISTORY} entries")
    entries = []
    for entry in history:
        if not isinstance(entry, dict):
            raise InvalidPayload("sessionMetadata.urlHistory entries must be objects")
        url = _optional_text(entry.get("url"), "urlHistory.url", MAX_URL_LENGTH)
        if not url:
            raise InvalidPayload("sessionMetadata.urlHistory entries need a url")
        timestamp = entry.get("timestamp")
        if timestamp is not None and (
            isinstance(timestamp, bool) or not isinstance(timestamp, int | float | str)
        ):
            raise InvalidPayload("urlHistory.timestamp must be a number or a string")
        entries.append(
            {
                "url": url,
                "title": _optional_text(entry.get("title"), "urlHistory.title", MAX_TITLE_LENGTH),
                "timestamp": timestamp,
            }
        )
    metadata: dict[str, Any] = {
        "referrer": _optional_text(value.get("referrer"), "referrer", MAX_URL_LENGTH),
        "landingPage": _optional_text(value.get("landingPage"), "landingPage", MAX_URL_LENGTH),
        "urlHistory": entries,
    }
    storable(metadata, "sessionMetadata")
    return metadata


@dataclasses.dataclass(frozen=True, kw_only=True)
class OutgoingReply:
    conversation_id: int
    content: str
    temp_id: str


def conversation_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise InvalidPayload("conversationId must be a positive integer")
    return value


def typing_flag(value: Any) -> bool:
    """``isTyping``: a JSON boolean; 0, 1 and "true" are refused, not guessed at."""
    if not isinstance(value, bool):
        raise InvalidPayload("isTyping must be true or false")
    return value


def outgoing_reply(payload: Any, *, conversation: int | None = None) -> OutgoingReply:
    """Validate ``sendReply {conversationId, content, tempId}`` (or the HTTP body)."""
    body = require_object(payload)
    message = outgoing_message({"content": body.get("content"), "tempId": body.get("tempId")})
    return OutgoingReply(
        conversation_id=conversation
        if conversation is not None
        else conversation_id(body.get("conversationId")),
        content=message.content,
        temp_id=message.temp_id,
    )


def outgoing_message(payload: Any) -> OutgoingMessage:
    """Validate ``sendMessage {content, tempId, sessionMetadata?}``."""
    body = require_object(payload)
    content = body.get("content")
    if not isinstance(content, str):
        raise InvalidPayload("content must be a string")
    _check_text(content, "content")
    content = content.strip()
    if not content:
        raise InvalidPayload("content is empty")
    if len(content) > MAX_CONTENT_LENGTH:
        raise InvalidPayload(f"content is longer than {MAX_CONTENT_LENGTH} characters")
    temp_id = body.get("tempId")
    if not isinstance(temp_id, str):
        raise InvalidPayload("tempId must be a UUID string")
    try:
        temp_id = str(uuid.UUID(temp_id))
    except ValueError:
        raise InvalidPayload("tempId must be a UUID string") from None
    return OutgoingMessage(
        content=content,
        temp_id=temp_id,
        session_metadata=session_metadata(body.get("sessionMetadata")),
    )

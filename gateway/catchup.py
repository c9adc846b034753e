"""The catch-up sync request, as the ``sync`` socket event and ``GET …/sync`` take it.

A dashboard that was offline (or whose gateway missed Redis events and sent it
``resync``) sends the cursor of its last sync and the last seq it holds per
conversation; see :meth:`persistence.conversations.Conversations.sync` for the
answer. Catch-up pages: while ``hasMore`` is true the client sends the returned
cursor as ``since`` with the same ``lastSeqs``; such a cursor also carries where
the walk stands, and is refused if tampered with.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway import validation
from gateway.errors import InvalidPayload
from persistence.cursors import InvalidCursor, SyncCursor

MAX_LAST_SEQS = 1_000  # conversations one sync may list
MAX_SEQ = 2**31 - 1  # seq is a PostgreSQL integer
MAX_ID = 2**63 - 1  # ids are PostgreSQL bigints


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyncRequest:
    project_id: int
    since: SyncCursor | None
    last_seqs: dict[int, int]


def since(value: Any) -> SyncCursor | None:
    """The ``since`` cursor; absent (or null, or empty) means "from the start"."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidPayload("since must be a cursor string from a previous sync")
    try:
        return SyncCursor.decode(value)
    except InvalidCursor as exc:
        raise InvalidPayload(f"since: {exc}") from None


def _id(value: Any, field: str) -> int:
    return validation.integer(value, field, low=1, high=MAX_ID)


def _seq(value: Any, field: str) -> int:
    return validation.integer(value, field, low=0, high=MAX_SEQ)


def last_seqs(value: Any) -> dict[int, int]:
    """``{"<conversationId>": seq}``, as the socket event carries it."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidPayload('lastSeqs must be an object {"<conversationId>": seq}')
    if len(value) > MAX_LAST_SEQS:
        raise InvalidPayload(f"lastSeqs lists more than {MAX_LAST_SEQS} conversations")
    return {_id(key, "lastSeqs keys"): _seq(seq, "lastSeqs values") for key, seq in value.items()}


def last_seqs_query(text: str | None) -> dict[int, int]:
    """``12:5,13:9`` (conversation:seq pairs), as the HTTP query string carries it."""
    if not text:
        return {}
    pairs = text.split(",")
    if len(pairs) > MAX_LAST_SEQS:
        raise InvalidPayload(f"last_seqs lists more than {MAX_LAST_SEQS} conversations")
    parsed: dict[int, int] = {}
    for pair in pairs:
        key, colon, seq = pair.partition(":")
        if not colon:
            raise InvalidPayload("last_seqs must be conversationId:seq pairs, comma-separated")
        parsed[_id(key, "last_seqs conversation ids")] = _seq(seq, "last_seqs seqs")
    return parsed


def sync_event(payload: Any) -> SyncRequest:
    """Validate ``sync {projectId, since?, lastSeqs?}``."""
    body = validation.require_object(payload)
    return SyncRequest(
        project_id=validation.project_id(body.get("projectId")),
        since=since(body.get("since")),
        last_seqs=last_seqs(body.get("lastSeqs")),
    )

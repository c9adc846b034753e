"""Opaque cursors for the dashboard's conversation list and its catch-up sync.

A cursor is base64url of a small JSON object. Clients must treat it as opaque:
its fields may change, and a cursor of one kind is refused by the other.

- A page cursor is the last row's sort key ``(updated_at, id)``: the next page
  starts strictly after it (keyset pagination, stable while rows are added).
- A sync cursor is a point in time: the next sync returns what changed at or after it.
  While a catch-up is paged it also carries a :class:`SyncResume`: where the
  next answer continues (see ``persistence.conversations``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
from typing import Any

from persistence.errors import PersistenceError

MAX_CURSOR_LENGTH = 512  # characters; ours are well under 100
MAX_ROW_ID = 2**63 - 1  # ids are PostgreSQL bigints
# Cursors we issue hold times from 1970 on; these bounds keep a forged one from
# overflowing datetime arithmetic on its way to PostgreSQL.
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)  # sync starts "from the beginning" at 1970
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
PAGE_KIND = "page"
SYNC_KIND = "sync"


class InvalidCursor(PersistenceError):
    """A cursor this server did not issue, or one of the other kind."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PageCursor:
    """Where a page of the newest-first conversation list ended."""

    updated_at: dt.datetime
    id: int

    def encode(self) -> str:
        return _encode({"k": PAGE_KIND, "u": self.updated_at.isoformat(), "i": self.id})

    @classmethod
    def decode(cls, text: str) -> PageCursor:
        body = _decode(text, PAGE_KIND)
        try:
            row_id = body["i"]
            if isinstance(row_id, bool) or not isinstance(row_id, int):
                raise TypeError("id is not an integer")
            if not 0 < row_id <= MAX_ROW_ID:
                raise ValueError("id is out of range")
            return cls(updated_at=_timestamp(body["u"]), id=row_id)
        except (KeyError, TypeError, ValueError):
            raise InvalidCursor("cursor is invalid") from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyncCursor:
    """The time from which the next catch-up sync looks for changes."""

    since: dt.datetime
    resume: SyncResume | None = None  # set while a catch-up is being paged

    def encode(self) -> str:
        body: dict[str, Any] = {"k": SYNC_KIND, "s": self.since.isoformat()}
        if self.resume is not None:
            body["r"] = self.resume.body()
        return _encode(body)

    @classmethod
    def decode(cls, text: str) -> SyncCursor:
        body = _decode(text, SYNC_KIND)
        try:
            resume = SyncResume.from_body(body["r"]) if "r" in body else None
            return cls(since=_timestamp(body["s"]), resume=resume)
        except (KeyError, TypeError, ValueError):
            raise InvalidCursor("cursor is invalid") from None


# --- Sync paging: the continuation a paged catch-up carries between answers. ---

MAX_SEQ = 2**31 - 1  # seq is a PostgreSQL integer


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyncResume:
    """Where the next answer of a paged catch-up starts.

    ``id`` is the keyset position: the next conversations come strictly below it
    (the walk goes by conversation id, which never moves: a conversation that
    changes while the walk pages keeps its place and is still visited; see
    :meth:`persistence.conversations.Conversations.sync`). ``partial_id``/``partial_seq`` name a
    conversation whose messages were cut at that seq; the next answer finishes
    it first. ``next_since`` is the cursor the last answer hands back: the first
    answer's start minus the overlap, so what changed while paging comes again.
    """

    next_since: dt.datetime
    id: int
    partial_id: int | None = None
    partial_seq: int | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "n": self.next_since.isoformat(),
            "i": self.id,
        }
        if self.partial_id is not None:
            body["c"] = self.partial_id
            body["q"] = self.partial_seq
        return body

    @classmethod
    def from_body(cls, body: Any) -> SyncResume:
        if not isinstance(body, dict):
            raise TypeError("resume is not an object")
        partial_id = body.get("c")
        return cls(
            next_since=_timestamp(body["n"]),
            id=_bounded(body["i"], 1, MAX_ROW_ID),
            partial_id=None if partial_id is None else _bounded(partial_id, 1, MAX_ROW_ID),
            partial_seq=None if partial_id is None else _bounded(body["q"], 0, MAX_SEQ),
        )


def _bounded(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError("integer out of range")
    return value


def _encode(body: dict[str, Any]) -> str:
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(text: str, kind: str) -> dict[str, Any]:
    if not isinstance(text, str) or not text or len(text) > MAX_CURSOR_LENGTH:
        raise InvalidCursor("cursor is invalid")
    try:
        body = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidCursor("cursor is invalid") from None
    if not isinstance(body, dict) or body.get("k") != kind:
        raise InvalidCursor(f"cursor is not a {kind} cursor")
    return body


def _timestamp(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise TypeError("timestamp is not a string")
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    try:
        in_utc = parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("timestamp is out of range") from None
    if not EARLIEST <= in_utc < LATEST:
        raise ValueError("timestamp is out of range")
    return parsed

"""Cursors a client sends back: anything the server could not have issued is InvalidCursor."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest

from persistence.cursors import InvalidCursor, PageCursor, SyncCursor


def forge(body: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()


def test_round_trip() -> None:
    now = dt.datetime.now(dt.UTC)
    page = PageCursor(updated_at=now, id=5)
    assert PageCursor.decode(page.encode()) == page
    assert SyncCursor.decode(SyncCursor(since=now).encode()) == SyncCursor(since=now)


@pytest.mark.parametrize("row_id", [2**63, 2**64, -(2**63) - 1, 0, -5])
def test_page_cursor_id_beyond_bigint_is_refused(row_id: int) -> None:
    text = forge({"k": "page", "u": "2024-01-01T00:00:00+00:00", "i": row_id})
    with pytest.raises(InvalidCursor):
        PageCursor.decode(text)


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+00:00"]
)
def test_timestamps_out_of_range_are_refused(stamp: str) -> None:
    with pytest.raises(InvalidCursor):
        PageCursor.decode(forge({"k": "page", "u": stamp, "i": 1}))
    with pytest.raises(InvalidCursor):
        SyncCursor.decode(forge({"k": "sync", "s": stamp}))


@pytest.mark.parametrize("text", ["\x00", "é" * 10, "%%%", forge({"k": "page"})])
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(InvalidCursor):
        PageCursor.decode(text)

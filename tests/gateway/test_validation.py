"""What the gateway accepts from clients, checked without a server: refusals are InvalidPayload."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from gateway import validation
from gateway.errors import InvalidPayload


def message(**overrides: Any) -> dict[str, Any]:
    return {"content": "hello", "tempId": str(uuid.uuid4()), **overrides}


@pytest.mark.parametrize(
    "value", ["²", "1²", "١٢", "\U0001d7d5", " 7\u00a0", "+7", "1_0", "7" * 5000, 0, -1]
)
def test_project_id_takes_ascii_digits_only(value: Any) -> None:
    with pytest.raises(InvalidPayload):
        validation.project_id(value)


@pytest.mark.parametrize("value", ["²", "١٢", "9" * 5000, "1_0"])
def test_integer_takes_ascii_digits_only(value: str) -> None:
    with pytest.raises(InvalidPayload):
        validation.integer(value, "limit", low=0, high=10**30)


def test_project_id_and_integer_accept_plain_decimals() -> None:
    assert validation.project_id("7") == 7 == validation.project_id(7)
    assert validation.integer(" 12 ", "limit", low=1, high=20) == 12


@pytest.mark.parametrize(
    "value",
    [
        "a\x00b",
        "\ud800",
        {"k\x00": 1},
        {"k": ["ok", {"deep": "x\udfff"}]},
        2**63,
        -(2**63) - 1,
        [1, 2, 2**64],
        float("nan"),
        float("inf"),
    ],
)
def test_storable_refuses_what_postgresql_cannot_store(value: Any) -> None:
    with pytest.raises(InvalidPayload):
        validation.storable(value)


def test_storable_refuses_deep_nesting_without_recursion_error() -> None:
    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InvalidPayload, match="nested"):
        validation.storable(deep)


def test_storable_accepts_ordinary_json() -> None:
    value = {"a": [1, -(2**63), 2**63 - 1, 1.5, None, True, "שלום 👋 ²"]}
    assert validation.storable(value) is value


@pytest.mark.parametrize(
    "payload",
    [
        message(content="poison\x00pill"),
        message(content="lone \ud83d surrogate"),
        message(tempId=str(uuid.uuid4()) + "\x00"),
        message(sessionMetadata={"referrer": "https://a.test/\x00"}),
        message(sessionMetadata={"landingPage": "\udc00"}),
        message(sessionMetadata={"urlHistory": [{"url": "https://a.test", "title": "t\x00"}]}),
        message(sessionMetadata={"urlHistory": [{"url": "https://a\x00.test"}]}),
        message(sessionMetadata={"urlHistory": [{"url": "https://a.test", "timestamp": 2**64}]}),
        message(sessionMetadata={"urlHistory": [{"url": "https://a.test", "timestamp": "\x00"}]}),
        message(sessionMetadata={"urlHistory": [{"url": "https://a.test", "timestamp": 1e400}]}),
    ],
)
def test_outgoing_message_refuses_unstorable_text(payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload):
        validation.outgoing_message(payload)


def test_outgoing_reply_refuses_nul() -> None:
    with pytest.raises(InvalidPayload):
        validation.outgoing_reply(message(content="a\x00", conversationId=1))


@pytest.mark.parametrize("url", ["https://a.test/\x00", "https://a.test/\ud800"])
def test_page_url_refuses_unstorable_text(url: str) -> None:
    with pytest.raises(InvalidPayload):
        validation.page_url(url)


@pytest.mark.parametrize("title", ["t\x00", "\udfff"])
def test_page_title_refuses_unstorable_text(title: str) -> None:
    with pytest.raises(InvalidPayload):
        validation.page_title(title)


def test_single_payload_checks_the_whole_value() -> None:
    with pytest.raises(InvalidPayload):
        validation.single_payload(({"projectId": 1, "extra": {"x": "\x00"}},))

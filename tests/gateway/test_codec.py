"""The gateway's JSON codec reads and writes what the standard library does."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import socketio
from hypothesis import given
from hypothesis import strategies as st

from gateway import codec
from gateway.sockets import create_socket_server

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=25,
)


@given(JSON_VALUES)
def test_what_it_writes_reads_back_as_the_same_value(value: Any) -> None:
    assert json.loads(codec.dumps(value, separators=(",", ":"))) == value


@given(JSON_VALUES)
def test_it_reads_what_the_standard_library_writes(value: Any) -> None:
    text = json.dumps(value)
    assert codec.loads(text) == json.loads(text)
    assert codec.loads(text.encode()) == json.loads(text)


def test_large_integers_stay_exact() -> None:
    big = 2**70 + 1
    assert codec.loads(f'{{"upToSeq": {big}}}') == {"upToSeq": big}
    assert codec.dumps([big]) == f"[{big}]"


def test_what_only_the_standard_library_accepts_still_parses() -> None:
    assert math.isnan(codec.loads("NaN"))
    assert codec.loads('"\\ud800"') == "\ud800"  # a lone surrogate, as JavaScript may send
    assert codec.dumps(["\ud800"]) == '["\\ud800"]'
    assert codec.dumps({1: "a"}) == '{"1":"a"}'


@pytest.mark.parametrize("text", ["", "{", '{"a":}', "[1,]", "nul"])
def test_bad_input_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        codec.loads(text)


def test_other_options_take_the_standard_library() -> None:
    assert codec.dumps({"b": 1, "a": 2}, sort_keys=True) == json.dumps(
        {"b": 1, "a": 2}, sort_keys=True
    )
    assert codec.dumps([1, 2]) == "[1,2]"
    assert codec.dumps([1, 2], separators=(", ", ": ")) == "[1, 2]"


def test_the_socket_server_encodes_packets_with_it() -> None:
    server = create_socket_server(services=lambda: None)  # type: ignore[arg-type]
    assert server.packet_class.json is codec
    packet = server.packet_class(socketio.packet.EVENT, data=["newMessage", {"content": "héllo"}])
    assert packet.encode() == '2["newMessage",{"content":"héllo"}]'

"""JSON for the gateway's hot paths: orjson behind the standard library's signatures.

Every visitor message is decoded once from its Socket.IO packet and every event is
encoded once per fan-out; with the standard library's ``json`` that was about a
tenth of the gateway's CPU at the benchmark's maximum (``docs/performance.md``).
python-socketio and python-engineio accept a module with ``dumps`` and ``loads``
(``json=``); :mod:`gateway.fanout` decodes the relay's events with it too.

The output is compact JSON in UTF-8 (non-ASCII characters are not escaped),
which every Socket.IO client reads alike. Where orjson refuses what the standard
library accepts (integers past 64 bits, ``NaN``, keys that are not strings), the
standard library answers instead, so nothing that worked before fails now.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

COMPACT = (",", ":")  # the separators python-socketio asks for
_OPTIONS = orjson.OPT_NON_STR_KEYS
# orjson reads an integer past 64 bits as a float; the standard library keeps it
# exact. Any run of this many digits sends the text to the standard library.
_LONG_NUMBER = re.compile(r"\d{19}")
_LONG_NUMBER_BYTES = re.compile(rb"\d{19}")


def dumps(obj: Any, *, separators: tuple[str, str] | None = None, **kwargs: Any) -> str:
    """``json.dumps``'s compact form; other keyword arguments take the standard library."""
    if kwargs or separators not in (None, COMPACT):
        return json.dumps(obj, separators=separators, **kwargs)
    try:
        return orjson.dumps(obj, option=_OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        # Integers past 64 bits, lone surrogates: the standard library's output.
        return json.dumps(obj, separators=COMPACT)


def loads(data: str | bytes, **kwargs: Any) -> Any:
    """``json.loads``: the same values, or the same ``ValueError`` for bad input."""
    long_number = (
        _LONG_NUMBER_BYTES.search(data) if isinstance(data, bytes) else _LONG_NUMBER.search(data)
    )
    if kwargs or long_number:
        return json.loads(data, **kwargs)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # NaN, Infinity, lone surrogates, or a real error with the usual message.
        return json.loads(data)

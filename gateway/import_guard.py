"""Libraries the gateway process never uses, kept out of it.

python-engineio's package imports its client on ``import engineio``, and the
client imports aiohttp whenever aiohttp is installed; it always is, because
Faust (the worker's) depends on it. In the gateway that cost 7.9 MB of its idle
81.5 MB resident (RSS after the gateway's imports, with and without), for an
HTTP client it never opens. python-engineio already runs without aiohttp (it
catches the ``ImportError``), so the gateway process marks it not importable
before it imports anything of its own.

Only ``parley gateway`` does this (see ``parley.cli``): tests and tools import
the gateway's modules next to aiohttp clients.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

UNUSED_IN_GATEWAY = ("aiohttp",)  # top-level packages the gateway's code never calls


def keep_out(modules: Iterable[str] = UNUSED_IN_GATEWAY) -> tuple[str, ...]:
    """Make ``import`` of ``modules`` raise ImportError in this process; returns those kept out.

    A ``None`` in ``sys.modules`` is Python's documented way to say so. A module
    already imported is left alone: there is nothing to save, and its users hold it.
    """
    kept = []
    for name in modules:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]
            kept.append(name)
    return tuple(kept)

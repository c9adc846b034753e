"""The event loop of Parley's servers: uvloop where it is installed, else asyncio's.

uvloop runs the same asyncio code with its I/O, timers and cross-thread wake-ups
in C (libuv); the gateway already gets it from uvicorn. It is a dependency on
Linux and macOS; elsewhere the standard loop runs unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is available."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def use_uvloop() -> bool:
    """Make loops created from now on uvloops (for a runner that creates its own loop)."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True

"""Request bodies read with a limit: never more than ``limit`` bytes in memory.

``request.body()`` buffers whatever the client sends before anything can look at
its size, so a route with a body reads it here instead: a declared
``Content-Length`` over the limit is refused before any byte is read, and a
chunked body is refused as soon as it passes the limit.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from gateway import validation
from gateway.errors import InvalidPayload, PayloadTooLarge


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the body is larger than {limit} bytes")


async def read_limited(request: Request, *, limit: int) -> bytes:
    """The raw body, or :class:`PayloadTooLarge` once it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    # uvicorn has already refused a malformed Content-Length.
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise _too_large(limit)
    return bytes(received)


async def read_json(request: Request, *, limit: int) -> Any:
    """The JSON body, checked to be :func:`validation.storable`; InvalidPayload otherwise."""
    raw = await read_limited(request, limit=limit)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError covers malformed JSON and bytes that are not UTF-8/16/32.
        raise InvalidPayload("the body must be JSON") from None
    return validation.storable(body, "body")

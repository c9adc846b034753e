"""Helpers for typing and presence tests: waiting on the ephemeral channel, and silence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis

from gateway.ephemeral import ephemeral_channel
from parley.settings import Settings
from tests.clients import Recorder


@asynccontextmanager
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    assert settings.redis_url is not None
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def wait_for_subscribers(settings: Settings, count: int, timeout: float = 10.0) -> None:
    """Until ``count`` gateways listen on the ephemeral channel (pub/sub drops the rest)."""
    channel = ephemeral_channel(settings.events_channel)
    async with redis_client(settings) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            [(_, listening)] = await client.pubsub_numsub(channel)
            if listening >= count:
                return
            await asyncio.sleep(0.02)
    raise TimeoutError(f"{count} gateways never subscribed to {channel}")


async def settle(seconds: float = 0.5) -> None:
    """Give an event that should NOT arrive the time it would have taken."""
    await asyncio.sleep(seconds)


async def only(recorder: Recorder, name: str, count: int, timeout: float = 10.0) -> list[Any]:
    """Exactly ``count`` ``name`` events: wait for them, then make sure no more follow."""
    await recorder.wait_for(name, count, timeout=timeout)
    await settle()
    received = recorder.payloads(name)
    assert len(received) == count, received
    return received

"""The per-visitor sliding window: exact under bursts, coalesced into few Redis calls."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.ratelimit import RateLimiter
from parley.settings import Settings

WINDOW = 60.0  # seconds


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    assert settings.redis_url
    client = aioredis.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


async def _script_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(
        int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval")
    )


def _subject() -> str:
    return f"test:{uuid.uuid4().hex}"


async def test_one_visitor_gets_exactly_the_limit_from_a_concurrent_burst(
    client: aioredis.Redis,
) -> None:
    limiter = RateLimiter(client=client, limit=5, window=WINDOW)
    subject = _subject()
    waits = await asyncio.gather(*(limiter.check(subject) for _ in range(40)))
    assert waits.count(0) == 5
    # The rest learn when the oldest slot frees: within the window, never 0.
    assert all(0 < wait <= WINDOW for wait in waits if wait)
    assert await limiter.check(_subject()) == 0  # another visitor is unaffected


async def test_a_burst_of_checks_shares_a_few_round_trips(client: aioredis.Redis) -> None:
    limiter = RateLimiter(client=client, limit=3, window=WINDOW, max_batch=64)
    subjects = [_subject() for _ in range(300)]
    await limiter.check(_subject())  # loads the script, so the count below is calls only
    before = await _script_calls(client)
    waits = await asyncio.gather(*(limiter.check(subject) for subject in subjects))
    calls = await _script_calls(client) - before
    assert waits == [0] * len(subjects)
    # One check per call would be 300; batches of at most 64 need at least 5.
    assert 5 <= calls <= 10


async def test_the_window_is_kept_across_batches(client: aioredis.Redis) -> None:
    limiter = RateLimiter(client=client, limit=4, window=WINDOW, max_batch=3)
    subject = _subject()
    first = [await limiter.check(subject) for _ in range(3)]
    burst = await asyncio.gather(*(limiter.check(subject) for _ in range(5)))
    assert first == [0, 0, 0]
    assert burst.count(0) == 1


async def test_a_cancelled_check_does_not_disturb_the_others(client: aioredis.Redis) -> None:
    limiter = RateLimiter(client=client, limit=10, window=WINDOW)
    abandoned = asyncio.ensure_future(limiter.check(_subject()))
    kept = asyncio.ensure_future(limiter.check(_subject()))
    await asyncio.sleep(0)
    abandoned.cancel()
    assert await kept == 0
    assert await limiter.check(_subject()) == 0


async def test_an_unreachable_redis_fails_open() -> None:
    # Port 1 on loopback refuses at once: the limiter allows rather than blocks chat.
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        limiter = RateLimiter(client=client, limit=1, window=WINDOW)
        assert await asyncio.gather(limiter.check("a"), limiter.check("a")) == [0, 0]
    finally:
        await client.aclose()

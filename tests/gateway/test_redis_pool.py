"""The gateway's Redis pool holds under a burst: limits stay on, nothing fails open."""

from __future__ import annotations

import asyncio

from gateway.app import REDIS_POOL_SIZE, build_services, close_services
from parley.settings import Settings

BURST = REDIS_POOL_SIZE + 150  # concurrent checks, more than the pool has connections
LIMIT = 50  # messages one visitor may send in the window


async def test_a_burst_beyond_the_pool_waits_for_connections_and_keeps_the_limit(
    settings: Settings,
) -> None:
    services = await build_services(settings.replace(rate_limit_count=LIMIT))
    try:
        waits = await asyncio.gather(*(services.limiter.check("1:burst") for _ in range(BURST)))
    finally:
        await close_services(services)
    # A pool that refuses past its size makes the limiter fail open: every check allowed.
    assert sum(1 for wait in waits if wait == 0) == LIMIT
    assert all(wait > 0 for wait in waits if wait != 0)

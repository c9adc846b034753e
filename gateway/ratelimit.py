"""A sliding-window rate limit per visitor, kept in Redis so every gateway shares it."""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

logger = logging.getLogger("parley.ratelimit")

KEY_PREFIX = "parley:ratelimit:"

# Atomic: count the window, then either record this attempt or report the wait.
SLIDING_WINDOW = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, 0, now - window)
local count = redis.call('ZCARD', key)
if count >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, window)
return 0
"""


class RateLimiter:
    """``check`` returns 0 when allowed, else the seconds until the next slot."""

    def __init__(self, *, client: aioredis.Redis, limit: int, window: float) -> None:
        self._limit = limit
        self._window_ms = int(window * 1000)
        self._script: Any = client.register_script(SLIDING_WINDOW)

    async def check(self, subject: str) -> int:
        now_ms = int(time.time() * 1000)
        try:
            wait_ms = await self._script(
                keys=[KEY_PREFIX + subject],
                args=[now_ms, self._window_ms, self._limit, f"{now_ms}:{uuid.uuid4().hex}"],
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            # Fail open: a Redis outage must not stop visitors and agents reaching each
            # other; the broker still bounds what is accepted.
            logger.warning(
                "rate limiter unavailable (%s); allowing",
                type(exc).__name__,
                extra={"action": "ratelimit.fail_open"},
            )
            return 0
        return math.ceil(int(wait_ms) / 1000) if int(wait_ms) > 0 else 0


# Atomic: a member already in the window refreshes its slot; a new one takes a slot
# if one is free, else the wait until the oldest expires is returned.
DISTINCT_WINDOW = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local member = ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, 0, now - window)
if not redis.call('ZSCORE', key, member) then
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return tonumber(oldest[2]) + window - now
  end
end
redis.call('ZADD', key, now, member)
redis.call('PEXPIRE', key, window)
return 0
"""


class DistinctLimiter:
    """At most ``limit`` distinct members per subject per window, shared by every gateway.

    New visitors per project per client address: without it, each fresh uid
    would buy a fresh message allowance.
    """

    def __init__(self, *, client: aioredis.Redis, limit: int, window: float, prefix: str) -> None:
        self._limit = limit
        self._window_ms = int(window * 1000)
        self._prefix = prefix
        self._script: Any = client.register_script(DISTINCT_WINDOW)

    async def check(self, subject: str, member: str) -> int:
        """0 when ``member`` may go on, else the seconds until a slot frees."""
        now_ms = int(time.time() * 1000)
        try:
            wait_ms = await self._script(
                keys=[KEY_PREFIX + self._prefix + subject],
                args=[now_ms, self._window_ms, self._limit, member],
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            logger.warning(
                "distinct limiter unavailable (%s); allowing",
                type(exc).__name__,
                extra={"action": "ratelimit.fail_open"},
            )
            return 0
        return math.ceil(int(wait_ms) / 1000) if int(wait_ms) > 0 else 0

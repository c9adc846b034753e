"""A sliding-window rate limit per visitor, kept in Redis so every gateway shares it."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

logger = logging.getLogger("parley.ratelimit")

KEY_PREFIX = "parley:ratelimit:"

# Atomic for a whole batch: for each key in turn, count its window, then either
# record this attempt or report the wait. One call answers every check that arrived
# while the previous call was in flight; a key listed twice sees its own first slot.
SLIDING_WINDOW = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local waits = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, 0, now - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    waits[i] = tonumber(oldest[2]) + window - now
  else
    redis.call('ZADD', key, now, ARGV[3 + i])
    redis.call('PEXPIRE', key, window)
    waits[i] = 0
  end
end
return waits
"""
# Keys per script call: bounds how long one call holds Redis (each key costs a few
# microseconds there) while still answering a full burst of sends in one round trip.
MAX_BATCH = 256
FLUSH_TASK = "ratelimit-flush"


class RateLimiter:
    """``check`` returns 0 when allowed, else the seconds until the next slot.

    Every message costs a check, so checks are coalesced: the first one starts a
    flush, and all that arrive until it runs (or while its call is in flight) go
    into the same multi-key script call. At low load a check is still one round
    trip; under load, a burst of several hundred checks is one round trip instead
    of several hundred through the connection pool.
    """

    def __init__(
        self, *, client: aioredis.Redis, limit: int, window: float, max_batch: int = MAX_BATCH
    ) -> None:
        self._limit = limit
        self._window_ms = int(window * 1000)
        self._max_batch = max_batch
        self._script: Any = client.register_script(SLIDING_WINDOW)
        # Members must be unique in a key's window across gateways and calls.
        self._nonce = uuid.uuid4().hex
        self._sequence = itertools.count()
        self._pending: list[tuple[str, asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def check(self, subject: str) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((KEY_PREFIX + subject, future))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name=FLUSH_TASK)
        wait_ms = await future
        return math.ceil(wait_ms / 1000) if wait_ms > 0 else 0

    async def _flush(self) -> None:
        batch: list[tuple[str, asyncio.Future[int]]] = []
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                waits = await self._call([key for key, _ in batch])
                for (_, future), wait_ms in zip(batch, waits, strict=True):
                    if not future.done():
                        future.set_result(wait_ms)
        except BaseException as exc:
            # Whoever still waits must not hang on a flush that died (cancelled on
            # shutdown, or a bug): they fail with it, and the next check starts anew.
            for _, future in [*batch, *self._pending]:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            self._pending.clear()
            raise
        finally:
            self._flusher = None

    async def _call(self, keys: list[str]) -> list[int]:
        now_ms = int(time.time() * 1000)
        members = [f"{now_ms}:{self._nonce}:{next(self._sequence)}" for _ in keys]
        try:
            waits = await self._script(
                keys=keys, args=[now_ms, self._window_ms, self._limit, *members]
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            # Fail open: a Redis outage must not stop visitors and agents reaching each
            # other; the broker still bounds what is accepted.
            logger.warning(
                "rate limiter unavailable (%s); allowing",
                type(exc).__name__,
                extra={"action": "ratelimit.fail_open"},
            )
            return [0] * len(keys)
        return [int(wait) for wait in waits]


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

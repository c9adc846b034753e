"""Which visitors are online, counted over every gateway's sockets.

A visitor is online from the first socket it opens on any gateway until the
last one closes (the count lives in Redis, see :mod:`gateway.presence_store`).
Each gateway keeps a heartbeat; when one stops (a crash), a survivor notices the
expired heartbeat, takes the sweep lock and closes that gateway's sockets, so
its visitors go offline about one TTL after it died.
"""

from __future__ import annotations

import asyncio
import collections
import logging

import redis.asyncio as aioredis
import redis.exceptions
from prometheus_client import Counter, Gauge

from gateway.presence_store import SWEPT_BACK, PresenceStore, Visitor

logger = logging.getLogger("parley.presence")

SWEEP_INTERVAL = 1.0  # seconds between looks for dead gateways (at most TTL/3)
REDIS_ERRORS = (redis.exceptions.RedisError, OSError)

VISITORS_ONLINE = Gauge(
    "parley_gateway_visitors_online", "Distinct visitors with a socket on this gateway"
)
STATUS_CHANGES = Counter(
    "parley_gateway_presence_changes_total",
    "Visitors this gateway marked online or offline",
    ["status"],
)
SWEPT = Counter(
    "parley_gateway_presence_swept_sockets_total", "Sockets of dead gateways this gateway removed"
)
REDIS_FAILURES = Counter(
    "parley_gateway_presence_redis_errors_total", "Presence updates Redis did not take"
)


class Presence:
    """This gateway's share of the visitors-online count, and the sweeper of dead gateways.

    ``attach``/``detach`` never raise for Redis trouble: what Redis missed is
    retried with the next heartbeat, and connections go on regardless.
    """

    def __init__(
        self, *, client: aioredis.Redis, namespace: str, channel: str, ttl: float, gateway_id: str
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"the presence TTL must be positive, got {ttl}")
        self.gateway_id = gateway_id
        self.heartbeat_interval = ttl / 3
        self.sweep_interval = min(SWEEP_INTERVAL, ttl / 3)
        self._store = PresenceStore(
            client=client, namespace=namespace, channel=channel, ttl_ms=max(1, int(ttl * 1000))
        )
        self._local: dict[str, Visitor] = {}  # this gateway's visitor sockets
        self._counts: collections.Counter[Visitor] = collections.Counter()
        self._unsynced: set[str] = set()  # attached here, not yet in Redis
        self._stale: dict[str, Visitor] = {}  # closed here, not yet removed from Redis

    async def attach(self, sid: str, *, project_id: int, visitor_uid: str) -> None:
        """Count ``sid`` as one of the visitor's sockets."""
        visitor = Visitor(project_id=project_id, visitor_uid=visitor_uid)
        if self._local.get(sid) == visitor:
            return
        await self.detach(sid)  # identify switched this socket to another visitor
        self._local[sid] = visitor
        self._counts[visitor] += 1
        if self._counts[visitor] == 1:
            VISITORS_ONLINE.inc()
        await self._attach_remote(sid, visitor)
        if self._local.get(sid) != visitor:
            # The socket closed while Redis was answering; do not leave it counted.
            await self._detach_remote(sid, visitor)

    async def detach(self, sid: str) -> None:
        """The socket closed (or now belongs to another visitor)."""
        visitor = self._local.pop(sid, None)
        if visitor is None:
            return
        self._unsynced.discard(sid)
        self._counts[visitor] -= 1
        if self._counts[visitor] <= 0:
            del self._counts[visitor]
            VISITORS_ONLINE.dec()
        await self._detach_remote(sid, visitor)

    async def _attach_remote(self, sid: str, visitor: Visitor) -> bool:
        try:
            went_online = await self._store.attach(self.gateway_id, sid, visitor)
        except REDIS_ERRORS as exc:
            self._unsynced.add(sid)
            self._redis_failed("attach", exc)
            return False
        self._unsynced.discard(sid)
        if went_online:
            STATUS_CHANGES.labels("online").inc()
        return True

    async def _detach_remote(self, sid: str, visitor: Visitor) -> bool:
        try:
            went_offline = await self._store.detach(self.gateway_id, sid, visitor)
        except REDIS_ERRORS as exc:
            self._stale[sid] = visitor
            self._redis_failed("detach", exc)
            return False
        self._stale.pop(sid, None)
        if went_offline == 1:
            STATUS_CHANGES.labels("offline").inc()
        return True

    def _redis_failed(self, what: str, exc: BaseException) -> None:
        REDIS_FAILURES.inc()
        logger.warning(
            "presence %s failed (%s)",
            what,
            type(exc).__name__,
            extra={"action": f"presence.{what}_failed"},
        )

    async def run_heartbeat(self) -> None:
        """Keep this gateway's heartbeat alive and Redis in step with its sockets."""
        while True:
            await self.beat()
            await asyncio.sleep(self.heartbeat_interval)

    async def beat(self) -> None:
        try:
            existed = await self._store.heartbeat(self.gateway_id)
        except REDIS_ERRORS as exc:
            self._redis_failed("heartbeat", exc)
            return
        if not existed and self._local:
            # The heartbeat lapsed (Redis outage, a stalled loop): another gateway
            # may have swept these sockets. Attaching again is idempotent.
            logger.warning(
                "heartbeat had lapsed; re-registering %d sockets",
                len(self._local),
                extra={"action": "presence.resync"},
            )
            self._unsynced.update(self._local)
        for sid in list(self._unsynced):
            visitor = self._local.get(sid)
            if visitor is None:
                self._unsynced.discard(sid)
            elif not await self._attach_remote(sid, visitor):
                return
        for sid, visitor in list(self._stale.items()):
            if not await self._detach_remote(sid, visitor):
                return

    async def run_sweeper(self) -> None:
        """Look for gateways whose heartbeat expired and close their sockets."""
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except REDIS_ERRORS as exc:
                self._redis_failed("sweep", exc)

    async def sweep(self) -> None:
        for gateway_id in await self._store.dead_gateways():
            if gateway_id != self.gateway_id and await self._store.claim_sweep(
                gateway_id, sweeper=self.gateway_id
            ):
                await self._sweep_gateway(gateway_id)

    async def _sweep_gateway(self, gateway_id: str) -> None:
        swept = offline = 0
        for sid, visitor in await self._store.sockets(gateway_id):
            result = await self._store.detach(gateway_id, sid, visitor, sweeping=True)
            if result == SWEPT_BACK:
                logger.info(
                    "gateway %s is back; sweep stopped",
                    gateway_id,
                    extra={"action": "presence.sweep_aborted"},
                )
                return
            swept += 1
            offline += result
            SWEPT.inc()
            if result == 1:
                STATUS_CHANGES.labels("offline").inc()
        await self._store.forget(gateway_id)
        logger.info(
            "swept gateway %s: %d sockets, %d visitors offline",
            gateway_id,
            swept,
            offline,
            extra={"action": "presence.swept"},
        )

    async def close(self) -> None:
        """Remove this gateway's sockets and heartbeat now rather than after the TTL."""
        for sid in list(self._local):
            await self.detach(sid)
            if self._stale:
                return  # Redis is unreachable; the survivors sweep after the TTL
        try:
            await self._store.retire(self.gateway_id)
        except REDIS_ERRORS as exc:
            self._redis_failed("close", exc)

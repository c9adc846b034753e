"""Presence in Redis: who has which sockets, changed only by atomic Lua scripts.

Keys, under a namespace that one deployment's gateways share and nothing else does:

- ``gateways``: ids of gateways that may hold sockets;
- ``gateway:<id>:alive``: that gateway's heartbeat, expiring after the TTL;
- ``gateway:<id>:sockets``: hash sid → visitor, that gateway's visitor sockets;
- ``visitor:<projectId>:<uid>``: set of ``<gatewayId>:<sid>``, the visitor's sockets.

Each count-and-change is one script that also PUBLISHes the resulting
``visitorStatusChanged`` on the ephemeral channel, so Redis orders a visitor's
online and offline events exactly as it ordered the changes, whichever gateways
made them. Methods raise Redis errors; :class:`gateway.presence.Presence` decides
what to do about them.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import redis.asyncio as aioredis

from gateway.ephemeral import encode
from gateway.fanout import project_room

# KEYS: gateway's socket hash, visitor's socket set
# ARGV: sid, visitor (JSON), member, channel, online event
ATTACH = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('SADD', KEYS[2], ARGV[3]) == 1 and redis.call('SCARD', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
  return 1
end
return 0
"""

# KEYS: gateway's socket hash, visitor's socket set, gateway's heartbeat
# ARGV: sid, member, channel, offline event, "1" when sweeping another gateway
# A sweep stops (-1) as soon as the swept gateway's heartbeat is back: it is
# re-registering its sockets and must not lose them.
DETACH = """
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  return -1
end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('SREM', KEYS[2], ARGV[2]) == 1 and redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  return 1
end
return 0
"""

# KEYS: heartbeat, gateway set. ARGV: gateway id, TTL (ms). Returns whether
# the heartbeat was still there; if not, the gateway may have been swept.
HEARTBEAT = """
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return existed
"""

# KEYS: heartbeat, socket hash, gateway set. ARGV: gateway id.
FORGET = """
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('HLEN', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
  return 1
end
return 0
"""

SWEPT_BACK = -1  # DETACH's answer when the swept gateway's heartbeat returned


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Visitor:
    project_id: int
    visitor_uid: str


class PresenceStore:
    """The shared count of every visitor's sockets, over all gateways."""

    def __init__(
        self, *, client: aioredis.Redis, namespace: str, channel: str, ttl_ms: int
    ) -> None:
        self._client = client
        self._ns = namespace
        self._channel = channel
        self._ttl_ms = ttl_ms
        self._attach: Any = client.register_script(ATTACH)
        self._detach: Any = client.register_script(DETACH)
        self._heartbeat: Any = client.register_script(HEARTBEAT)
        self._forget: Any = client.register_script(FORGET)

    def alive_key(self, gateway_id: str) -> str:
        return f"{self._ns}:gateway:{gateway_id}:alive"

    def _sockets_key(self, gateway_id: str) -> str:
        return f"{self._ns}:gateway:{gateway_id}:sockets"

    def _visitor_key(self, visitor: Visitor) -> str:
        return f"{self._ns}:visitor:{visitor.project_id}:{visitor.visitor_uid}"

    def _status(self, visitor: Visitor, online: bool) -> str:
        data = {
            "visitorUid": visitor.visitor_uid,
            "projectId": visitor.project_id,
            "isOnline": online,
        }
        return encode("visitorStatusChanged", project_room(visitor.project_id), data)

    async def attach(self, gateway_id: str, sid: str, visitor: Visitor) -> bool:
        """Record the socket; True when it is the visitor's first (now online)."""
        went_online = await self._attach(
            keys=[self._sockets_key(gateway_id), self._visitor_key(visitor)],
            args=[
                sid,
                json.dumps([visitor.project_id, visitor.visitor_uid]),
                f"{gateway_id}:{sid}",
                self._channel,
                self._status(visitor, True),
            ],
        )
        return bool(int(went_online))

    async def detach(
        self, gateway_id: str, sid: str, visitor: Visitor, *, sweeping: bool = False
    ) -> int:
        """1 when that was the visitor's last socket (now offline), 0 if not, or SWEPT_BACK."""
        result = await self._detach(
            keys=[
                self._sockets_key(gateway_id),
                self._visitor_key(visitor),
                self.alive_key(gateway_id),
            ],
            args=[
                sid,
                f"{gateway_id}:{sid}",
                self._channel,
                self._status(visitor, False),
                "1" if sweeping else "0",
            ],
        )
        return int(result)

    async def heartbeat(self, gateway_id: str) -> bool:
        """Refresh the heartbeat; False when it had expired."""
        existed = await self._heartbeat(
            keys=[self.alive_key(gateway_id), f"{self._ns}:gateways"],
            args=[gateway_id, self._ttl_ms],
        )
        return bool(int(existed))

    async def forget(self, gateway_id: str) -> None:
        """Drop a gateway from the list once it has no heartbeat and no sockets."""
        await self._forget(
            keys=[
                self.alive_key(gateway_id),
                self._sockets_key(gateway_id),
                f"{self._ns}:gateways",
            ],
            args=[gateway_id],
        )

    async def retire(self, gateway_id: str) -> None:
        """A gateway shutting down: no heartbeat, and off the list if it has no sockets."""
        await self._client.delete(self.alive_key(gateway_id))
        await self.forget(gateway_id)

    async def dead_gateways(self) -> list[str]:
        """Listed gateways whose heartbeat has expired."""
        dead = []
        for raw in await self._client.smembers(f"{self._ns}:gateways"):  # type: ignore[misc]
            gateway_id = _text(raw)
            if not await self._client.exists(self.alive_key(gateway_id)):
                dead.append(gateway_id)
        return dead

    async def claim_sweep(self, gateway_id: str, *, sweeper: str) -> bool:
        """One sweeper per dead gateway; the lock expires, so a sweeper that dies
        halfway is taken over by another."""
        locked = await self._client.set(
            f"{self._ns}:sweep:{gateway_id}", sweeper, nx=True, px=self._ttl_ms
        )
        return bool(locked)

    async def sockets(self, gateway_id: str) -> list[tuple[str, Visitor]]:
        """A gateway's recorded sockets; unreadable entries are dropped."""
        key = self._sockets_key(gateway_id)
        found = []
        for raw_sid, raw_visitor in (await self._client.hgetall(key)).items():  # type: ignore[misc]
            visitor = _parse_visitor(raw_visitor)
            if visitor is None:
                await self._client.hdel(key, _text(raw_sid))  # type: ignore[misc]
            else:
                found.append((_text(raw_sid), visitor))
        return found


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _parse_visitor(raw: Any) -> Visitor | None:
    try:
        project_id, visitor_uid = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(project_id, int) or not isinstance(visitor_uid, str):
        return None
    return Visitor(project_id=project_id, visitor_uid=visitor_uid)

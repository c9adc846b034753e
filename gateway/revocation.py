"""Connected dashboards lose access within seconds of ``parley agent revoke`` or ``remove``.

The command publishes ``{"agentId": N}`` on ``<events_channel>:revocations``;
every gateway re-checks that agent's sockets: a revoked token (its version is
behind the agent's) or a deleted agent is disconnected, and a project room the
agent no longer belongs to is left. Pub/sub is at-most-once, so every gateway
also re-checks all of its dashboards every ``interval`` seconds as a backstop.
HTTP routes need none of this: they check the token's version on every call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter

from gateway.clients import AgentClient, ClientRegistry
from gateway.fanout import project_room
from gateway.services import Services
from persistence.backoff import Backoff
from persistence.errors import DatabaseUnavailable, NotFound

logger = logging.getLogger("parley.revocation")

CHANNEL_SUFFIX = ":revocations"
PROJECT_ROOM_PREFIX = project_room(0)[:-1]  # "project:"

ENFORCED = Counter(
    "parley_gateway_agent_access_removed_total",
    "Dashboard sockets cut off after a revocation or removal",
    ["what"],
)


def revocation_channel(events_channel: str) -> str:
    return events_channel + CHANNEL_SUFFIX


async def announce(client: aioredis.Redis, *, events_channel: str, agent_id: int) -> int:
    """Tell every gateway to re-check the agent now; the number of gateways listening."""
    payload = json.dumps({"agentId": agent_id})
    listeners: int = await client.publish(revocation_channel(events_channel), payload)
    return listeners


class AgentAccess:
    """Re-checks dashboards' tokens and memberships, on notice and periodically."""

    def __init__(
        self, *, sio: Any, clients: ClientRegistry, services: Callable[[], Services]
    ) -> None:
        self._sio = sio
        self._clients = clients
        self._services = services

    async def deliver(self, raw: str | bytes) -> None:
        """One message of the revocation channel."""
        try:
            agent_id = json.loads(raw)["agentId"]
        except (ValueError, KeyError, TypeError):
            agent_id = None
        if isinstance(agent_id, bool) or not isinstance(agent_id, int):
            logger.error("dropped a malformed revocation", extra={"action": "revocation.malformed"})
            return
        await self.recheck(agent_id)

    async def recheck(self, agent_id: int | None = None) -> None:
        """Re-check the sockets of one agent, or of every agent; raises DatabaseUnavailable."""
        for sid, client in self._clients.agents():
            if agent_id is None or client.agent_id == agent_id:
                await self._check(sid, client)

    async def _check(self, sid: str, client: AgentClient) -> None:
        directory = self._services().directory
        try:
            agent = await directory.get_agent(client.agent_id)
        except NotFound:
            agent = None
        if agent is None or agent.token_version != client.token_version:
            ENFORCED.labels("token").inc()
            logger.info(
                "disconnecting agent %s: token revoked",
                client.agent_id,
                extra={"action": "revocation.disconnect"},
            )
            await self._sio.disconnect(sid)
            return
        for room in self._sio.rooms(sid):
            if not room.startswith(PROJECT_ROOM_PREFIX):
                continue
            project_id = int(room[len(PROJECT_ROOM_PREFIX) :])
            if not await directory.is_member(agent_id=client.agent_id, project_id=project_id):
                ENFORCED.labels("membership").inc()
                logger.info(
                    "agent %s left %s: no longer a member",
                    client.agent_id,
                    room,
                    extra={"action": "revocation.leave"},
                )
                await self._sio.leave_room(sid, room)

    async def run_backstop(self, *, interval: float) -> None:
        """Every ``interval`` seconds, re-check every dashboard; only cancellation ends it."""
        backoff = Backoff()
        while True:
            await asyncio.sleep(interval)
            try:
                await self.recheck()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:
                logger.warning(
                    "database unavailable; agent re-check postponed",
                    extra={"action": "revocation.unavailable"},
                )
            except Exception:
                logger.exception("agent re-check failed", extra={"action": "revocation.error"})
                await asyncio.sleep(backoff.next())
            else:
                backoff.reset()

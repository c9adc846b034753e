"""Real-time delivery resumes by itself after Redis restarts (no gateway restart)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import redis.asyncio as aioredis

from parley.embedded import EmbeddedRedis
from parley.settings import Settings
from persistence.directory import Project
from tests import clients
from tests.servers import gateway_in_process


def relayed(event_id: int, project_id: int) -> str:
    message = {
        "id": event_id,
        "conversationId": 1,
        "projectId": project_id,
        "visitorUid": "v",
        "seq": event_id,
        "content": f"m{event_id}",
        "fromCustomer": True,
        "senderType": "visitor",
        "status": "sent",
        "tempId": "0b8a3c39-8a0f-4a62-9df1-6c1b1a2f4d10",
        "createdAt": "2026-11-25T10:00:00Z",
    }
    return json.dumps(
        {"eventId": event_id, "conversationId": 1, "type": "message.created", "message": message}
    )


async def publish_until_received(
    client: aioredis.Redis, channel: str, raw: str, dash: clients.Recorder, count: int
) -> None:
    """Publish until the dashboard has ``count`` messages: pub/sub drops while resubscribing."""
    deadline = time.monotonic() + 20
    while len(dash.payloads("newMessage")) < count and time.monotonic() < deadline:
        await client.publish(channel, raw)
        await asyncio.sleep(0.2)


async def test_fanout_resubscribes_after_a_redis_restart(
    settings: Settings, project: Project, agent_token: str, tmp_path: Path
) -> None:
    redis_server = EmbeddedRedis(workdir=tmp_path / "redis")
    redis_server.start()
    own = settings.replace(redis_url=redis_server.url)
    try:
        async with gateway_in_process(own) as url:
            dash = await clients.dashboard(url, agent_token, project.id)
            publisher = aioredis.Redis.from_url(redis_server.url)
            await publish_until_received(
                publisher, own.events_channel, relayed(1, project.id), dash, 1
            )
            await publisher.aclose()

            redis_server.restart()

            publisher = aioredis.Redis.from_url(redis_server.url)
            await publish_until_received(
                publisher, own.events_channel, relayed(2, project.id), dash, 2
            )
            await publisher.aclose()
            # Republished copies of an event are emitted once: the gateway drops repeats.
            assert [m["seq"] for m in dash.payloads("newMessage")] == [1, 2]
            await dash.close()
    finally:
        redis_server.stop()

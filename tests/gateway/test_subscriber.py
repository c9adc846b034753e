"""Real-time delivery resumes by itself after Redis restarts or refusals (no gateway restart).

After every lost-and-back fan-out subscription the gateway emits ``resync`` to
its sockets, and ``/readyz`` names ``fanout`` while the subscription is down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateway.app import subscription_client
from gateway.subscription import DRAIN_LIMIT, ChannelSubscription
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


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    """Wait for ``check()``; fail loudly on timeout."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def resyncs_of(dash: clients.Recorder) -> list[tuple[Any, ...]]:
    """Record the dashboard's ``resync`` events (with whatever arguments they carry)."""
    received: list[tuple[Any, ...]] = []

    async def handle(*args: Any) -> None:
        received.append(args)

    dash.client.on("resync", handle)
    return received


async def readiness(http: httpx.AsyncClient) -> tuple[int, list[str]]:
    answer = await http.get("/readyz")
    return answer.status_code, answer.json().get("failing", [])


async def test_fanout_resubscribes_after_a_redis_restart(
    settings: Settings, project: Project, agent_token: str, tmp_path: Path
) -> None:
    redis_server = EmbeddedRedis(workdir=tmp_path / "redis")
    redis_server.start()
    own = settings.replace(redis_url=redis_server.url)
    try:
        async with gateway_in_process(own) as url:
            dash = await clients.dashboard(url, agent_token, project.id)
            resyncs = resyncs_of(dash)
            publisher = aioredis.Redis.from_url(redis_server.url)
            await publish_until_received(
                publisher, own.events_channel, relayed(1, project.id), dash, 1
            )
            await publisher.aclose()
            assert resyncs == []

            redis_server.restart()

            publisher = aioredis.Redis.from_url(redis_server.url)
            await publish_until_received(
                publisher, own.events_channel, relayed(2, project.id), dash, 2
            )
            await publisher.aclose()
            # Republished copies of an event are emitted once: the gateway drops repeats.
            assert [m["seq"] for m in dash.payloads("newMessage")] == [1, 2]
            # The subscription was lost once and is back: one resync, without payload.
            await until(lambda: _true(resyncs), "resync")
            assert resyncs == [()]
            await dash.close()
    finally:
        redis_server.stop()


async def _true(items: list[Any]) -> bool:
    return bool(items)


async def test_a_refused_subscription_is_retried_reported_and_then_resyncs(
    settings: Settings,
    project: Project,
    agent_token: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A NOPERM is not a dropped connection, yet the loop must survive it too."""
    redis_server = EmbeddedRedis(workdir=tmp_path / "redis")
    redis_server.start()
    own = settings.replace(redis_url=redis_server.url)
    admin = aioredis.Redis.from_url(redis_server.url)
    caplog.set_level(logging.WARNING, logger="parley.subscription")
    try:
        async with (
            gateway_in_process(own) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as http,
        ):

            async def ready() -> bool:
                return await readiness(http) == (200, [])

            await until(ready, "the gateway to be ready")
            dash = await clients.dashboard(url, agent_token, project.id)
            resyncs = resyncs_of(dash)

            # Redis still answers PING, but refuses this gateway's SUBSCRIBE.
            await admin.execute_command("ACL", "SETUSER", "default", "-subscribe", "-psubscribe")
            await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")

            async def fanout_down() -> bool:
                return await readiness(http) == (503, ["fanout"])

            await until(fanout_down, "/readyz to name fanout")

            def refusals() -> int:
                return sum(
                    "NoPermissionError" in r.getMessage()
                    for r in caplog.records
                    if getattr(r, "action", None) == "fanout.reconnect"
                )

            async def retried() -> bool:
                return refusals() >= 2

            await until(retried, "two refused attempts, logged")
            assert (await http.get("/healthz")).status_code == 200
            assert resyncs == []

            await admin.execute_command("ACL", "SETUSER", "default", "+@all")
            await until(ready, "/readyz to recover")
            await until(lambda: _true(resyncs), "resync")
            await publish_until_received(admin, own.events_channel, relayed(7, project.id), dash, 1)
            assert resyncs == [()]
            await dash.close()
    finally:
        await admin.aclose()
        redis_server.stop()


async def test_only_the_gateway_that_lost_its_subscription_sends_resync(
    settings: Settings, project: Project, agent_token: str, tmp_path: Path
) -> None:
    """Each gateway tells only its own sockets; the other's never missed anything."""
    redis_server = EmbeddedRedis(workdir=tmp_path / "redis")
    redis_server.start()
    own = settings.replace(redis_url=redis_server.url)
    admin = aioredis.Redis.from_url(redis_server.url)

    async def subscribers() -> set[str]:
        return {c["id"] for c in await admin.client_list(_type="pubsub")}

    try:
        async with (
            gateway_in_process(own) as url_a,
            httpx.AsyncClient(base_url=url_a, timeout=10) as http_a,
        ):

            async def a_ready() -> bool:
                return await readiness(http_a) == (200, [])

            await until(a_ready, "gateway A to be ready")
            await until(lambda: _has(subscribers(), 2), "A's two subscriptions")
            gateway_a = await subscribers()
            async with (
                gateway_in_process(own) as url_b,
                httpx.AsyncClient(base_url=url_b, timeout=10) as http_b,
            ):

                async def b_ready() -> bool:
                    return await readiness(http_b) == (200, [])

                await until(b_ready, "gateway B to be ready")
                dash_a = await clients.dashboard(url_a, agent_token, project.id)
                dash_b = await clients.dashboard(url_b, agent_token, project.id)
                resyncs_a, resyncs_b = resyncs_of(dash_a), resyncs_of(dash_b)
                for client_id in gateway_a:
                    await admin.execute_command("CLIENT", "KILL", "ID", client_id)
                await until(lambda: _true(resyncs_a), "resync on gateway A's dashboard")
                await asyncio.sleep(0.5)  # what B would have sent by now
                assert resyncs_a == [()]
                assert resyncs_b == []
                await dash_a.close()
                await dash_b.close()
    finally:
        await admin.aclose()
        redis_server.stop()


async def _has(ids: Awaitable[set[str]], count: int) -> bool:
    return len(await ids) >= count


async def test_a_burst_is_delivered_whole_in_order_and_once(settings: Settings) -> None:
    """Thousands of messages land in the subscription's buffer at once; the drain
    hands every one over, in order, and the subscription keeps going afterwards."""
    assert settings.redis_url is not None
    channel = settings.events_channel + ":burst"
    delivered: list[int] = []

    async def deliver(raw: str | bytes) -> None:
        delivered.append(int(raw))

    listening = subscription_client(settings.redis_url)
    publisher = aioredis.Redis.from_url(settings.redis_url)
    subscription = ChannelSubscription(
        client=listening, channel=channel, deliver=deliver, name="burst"
    )
    running = asyncio.create_task(subscription.run(), name="test-burst-subscription")
    try:
        await asyncio.wait_for(subscription.subscribed.wait(), 10)
        count = 3 * DRAIN_LIMIT + 7
        async with publisher.pipeline(transaction=False) as pipe:
            for n in range(count):
                pipe.publish(channel, str(n))
            await pipe.execute()
        await until(lambda: _reached(delivered, count), f"{count} deliveries")
        await publisher.publish(channel, str(count))
        await until(lambda: _reached(delivered, count + 1), "one more after the burst")
        assert delivered == list(range(count + 1))
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await publisher.aclose()
        await listening.aclose()


async def _reached(items: list[int], count: int) -> bool:
    return len(items) >= count

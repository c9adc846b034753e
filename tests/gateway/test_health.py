"""Liveness and readiness, including a dependency going away."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest

from parley.embedded import EmbeddedRedis
from parley.settings import Settings
from tests.servers import gateway_in_process


async def until_failing(
    client: httpx.AsyncClient, failing: list[str], timeout: float = 20.0
) -> None:
    """Until /readyz names exactly ``failing`` (200 when empty); fail loudly on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await client.get("/readyz")
        named = answer.json().get("failing", [])
        if named == failing and answer.status_code == (503 if failing else 200):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz answered {answer.status_code} {answer.json()}")
        await asyncio.sleep(0.05)


async def test_healthz_and_readyz(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        # Ready once the fan-out subscription is confirmed, moments after startup.
        await until_failing(client, [])
        ready = await client.get("/readyz")
        assert ready.json() == {"status": "ready"}
        metrics = await client.get("/metrics")
        assert "parley_gateway_sockets" in metrics.text


async def test_readyz_names_redis_when_it_stops_and_recovers(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis_server = EmbeddedRedis(workdir=tmp_path / "redis")
    redis_server.start()
    try:
        async with (
            gateway_in_process(settings.replace(redis_url=redis_server.url)) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as client,
        ):
            await until_failing(client, [])
            redis_server.stop()
            with caplog.at_level(logging.WARNING, logger="parley.health"):
                down = await client.get("/readyz")
            assert down.status_code == 503
            # Names only: exception text (hosts, ports) is for the logs, not anonymous callers.
            assert set(down.json()) == {"status", "failing"}
            assert "redis" in down.json()["failing"]
            assert str(redis_server.port) not in down.text
            logged = [r for r in caplog.records if getattr(r, "action", "") == "health.failing"]
            assert any(r.dependency == "redis" and r.error for r in logged)
            # The fan-out subscription notices within a read timeout.
            await until_failing(client, ["fanout", "redis"])
            assert (await client.get("/healthz")).status_code == 200
            redis_server.start()
            await until_failing(client, [])
    finally:
        redis_server.stop()

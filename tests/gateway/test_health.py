"""Liveness and readiness, including a dependency going away."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from parley.embedded import EmbeddedRedis
from parley.settings import Settings
from tests.servers import gateway_in_process


async def test_healthz_and_readyz(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
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
            assert (await client.get("/readyz")).status_code == 200
            redis_server.stop()
            with caplog.at_level(logging.WARNING, logger="parley.health"):
                down = await client.get("/readyz")
            assert down.status_code == 503
            # Names only: exception text (hosts, ports) is for the logs, not anonymous callers.
            assert down.json() == {"status": "unavailable", "failing": ["redis"]}
            assert str(redis_server.port) not in down.text
            [logged] = [r for r in caplog.records if getattr(r, "action", "") == "health.failing"]
            assert logged.dependency == "redis" and logged.error
            assert (await client.get("/healthz")).status_code == 200
            redis_server.start()
            assert (await client.get("/readyz")).status_code == 200
    finally:
        redis_server.stop()

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.tokens import TokenSigner
from parley.settings import Settings
from tests.servers import Cluster, create_topics


@pytest.fixture
def e2e_settings(settings: Settings) -> Settings:
    # Bulk tests send more than a visitor's default 30 per minute, and faster than a
    # socket's default event budget.
    return settings.replace(rate_limit_count=10_000, socket_event_burst=10_000.0)


@pytest.fixture
async def cluster(e2e_settings: Settings, tmp_path: Path) -> AsyncIterator[Cluster]:
    await create_topics(e2e_settings)
    running = Cluster(e2e_settings, tmp_path)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def signer(e2e_settings: Settings) -> TokenSigner:
    return TokenSigner(secret=e2e_settings.secret, ttl=e2e_settings.token_ttl)

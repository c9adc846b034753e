from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.tokens import TokenSigner
from parley.settings import Settings
from persistence.directory import Directory, Project
from tests.servers import gateway_in_process


@pytest.fixture
async def gateway_url(settings: Settings) -> AsyncIterator[str]:
    async with gateway_in_process(settings) as url:
        yield url


@pytest.fixture
async def project(directory: Directory) -> Project:
    return await directory.create_project(name="Acme")


@pytest.fixture
def signer(settings: Settings) -> TokenSigner:
    return TokenSigner(secret=settings.secret, ttl=settings.token_ttl)


@pytest.fixture
async def agent_token(directory: Directory, project: Project, signer: TokenSigner) -> str:
    agent = await directory.add_agent(project_id=project.id, email="ada@acme.test")
    return signer.issue(agent.id)

"""The gateway process without the libraries it never uses (aiohttp)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp

from gateway.import_guard import keep_out
from parley.settings import Settings
from persistence.directory import Project
from tests.gateway.test_websocket_protocol import _open
from tests.servers import Cluster, create_topics

IMPORT_GATEWAY = """
import sys
from gateway.import_guard import keep_out
print(",".join(keep_out()))
import engineio.async_client
from gateway.app import create_app
print(engineio.async_client.aiohttp is None, sys.modules["aiohttp"] is None)
"""


def test_keep_out_makes_the_gateway_import_without_aiohttp() -> None:
    """python-engineio takes the missing aiohttp as absent; the gateway imports the same."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_GATEWAY], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["aiohttp", "True", "True"]


def test_keep_out_leaves_an_imported_module_alone() -> None:
    """Here (the tests' process) aiohttp is in use: keep_out must not take it away."""
    assert sys.modules["aiohttp"] is aiohttp
    assert keep_out(["aiohttp"]) == ()
    assert sys.modules["aiohttp"] is aiohttp


async def test_the_cli_gateway_runs_without_aiohttp(
    settings: Settings, project: Project, tmp_path: Path
) -> None:
    """``parley gateway`` serves sockets, and aiohttp's C extensions are not in its memory."""

    await create_topics(settings)
    cluster = Cluster(settings, tmp_path)
    try:
        url = await cluster.gateway()
        async with aiohttp.ClientSession() as session:
            ws = await _open(session, url, project)
            await ws.close()
        process = cluster.children[0].process
        assert process is not None
        maps = await asyncio.to_thread(Path(f"/proc/{process.pid}/maps").read_text)
        # aiohttp's C extensions (its parsers, multidict, yarl's) are mapped once imported.
        assert "/aiohttp/" not in maps
        assert "/multidict/" not in maps
    finally:
        cluster.stop()

"""The gateway in-process (for socket tests) and every Parley process as a child (e2e)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import uvicorn

from gateway.app import create_app
from gateway.routing import INTERFACE
from gateway.websocket_protocol import websocket_options
from parley.embedded import free_port
from parley.settings import Settings
from streams.topics import ensure_topics, parley_topics
from tests.services import settings_env

ROOT = Path(__file__).resolve().parent.parent


async def create_topics(settings: Settings) -> None:
    assert settings.kafka_bootstrap_servers
    await ensure_topics(settings.kafka_bootstrap_servers, parley_topics(settings))


@contextlib.asynccontextmanager
async def gateway_in_process(settings: Settings) -> AsyncIterator[str]:
    """Run the gateway's ASGI app under uvicorn inside the test's event loop."""
    await create_topics(settings)
    port = free_port()
    config = uvicorn.Config(
        create_app(settings.replace(port=port)),
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        interface=INTERFACE,
        **websocket_options(),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="test-gateway")
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("gateway exited during startup")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def asgi_in_process(app: object) -> AsyncIterator[str]:
    """Serve any ASGI app (a bare Socket.IO server...) under uvicorn in this event loop."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="off", ws="websockets-sansio"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="test-asgi-server")
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server exited during startup")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


class Child:
    """A Parley process with its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        handle = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        handle.close()
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_output(self, text: str, timeout: float = 60.0, *, since: int = 0) -> None:
        """Wait for ``text`` in the log after character ``since`` (a restart appends)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output()[since:]:
                return
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output()[-4000:]}")
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} never printed {text!r}:\n{self.output()[-4000:]}")

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


async def wait_ready(child: Child, url: str, timeout: float = 30.0) -> None:
    """Wait until the gateway at ``url`` answers ``/readyz`` with 200."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"gateway {child.name} not ready:\n{child.output()[-4000:]}")


async def metric(port: int, sample: str) -> float:
    """One sample of a Prometheus endpoint on loopback (``x_total{kind="a"}``); 0 if absent."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    values = [line.split()[-1] for line in text.splitlines() if line.startswith(f"{sample} ")]
    return float(values[0]) if values else 0.0


class Cluster:
    """Gateways, workers and relays for one test, all stopped at the end."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.children: list[Child] = []
        self.env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}

    def _child(self, name: str, args: list[str], **env: str) -> Child:
        child = Child(name, args, {**self.env, **env}, self.logs / f"{name}.log")
        self.children.append(child)
        return child.start()

    async def gateway(self, name: str = "gateway", port: int | None = None) -> str:
        port = port or free_port()
        child = self._child(
            name, [sys.executable, "-m", "parley.cli", "gateway"], PARLEY_PORT=str(port)
        )
        url = f"http://127.0.0.1:{port}"
        await wait_ready(child, url)
        return url

    async def worker(self, name: str = "worker", **env: str) -> Child:
        child = self._child(
            name,
            [
                sys.executable,
                "-m",
                "faust",
                "-A",
                "streams.app",
                "worker",
                "-l",
                "info",
                "--without-web",
            ],
            **env,
        )
        await child.wait_for_output("[^Worker]: Ready")
        return child

    async def relay(self, name: str = "relay", **env: str) -> Child:
        child = self._child(name, [sys.executable, "-m", "parley.cli", "relay"], **env)
        await child.wait_for_output("listener.connected")
        return child

    async def start_path(self, *gateways: str) -> list[str]:
        """The whole message path: a worker, a relay and the named gateways' URLs."""
        await self.worker()
        await self.relay()
        return [await self.gateway(name) for name in gateways or ("gateway",)]

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()

"""Real headless Chromium (Debian's, never a downloaded one) against the real message path.

The tests share one message path (a gateway, the Faust worker and the relay as
child processes, on a database of their own) and one Chromium; each test gets a
project whose only allowed origin is a separate host site (another port), an agent,
and fresh browser contexts. A test that stops the worker or needs other settings
takes a private path. Host pages are files that a small HTTP server serves from the test's folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import http.server
import os
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.tokens import TokenSigner
from parley.embedded import free_port
from parley.settings import Settings
from persistence.database import create_engine
from persistence.directory import Directory
from tests.servers import Cluster, create_topics
from tests.services import ServiceSet, isolated_settings

CHROMIUM = os.environ.get("PARLEY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"
WAIT = 20_000  # ms: how long an expectation in a browser test waits before failing


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stack:
    gateway: str  # http://127.0.0.1:PORT
    host: str  # the host site's origin, a different port
    host_dir: Path
    project_id: int
    token: str
    cluster: Cluster
    directory: Directory

    def host_page(
        self,
        name: str,
        *,
        head: str = "",
        body: str = "",
        project_id: int | None = None,
        **data: str,
    ) -> str:
        """Write a host page that embeds the widget with one tag; its URL."""
        attrs = " ".join(f'data-{key.replace("_", "-")}="{value}"' for key, value in data.items())
        (self.host_dir / name).write_text(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{name}</title>{head}</head><body>"
            f"<h1>Host page {name}</h1><p>Some text of the host site.</p>{body}"
            f'<script src="{self.gateway}/widget.js" '
            f'data-project-id="{project_id or self.project_id}" {attrs} async>'
            "</script></body></html>"
        )
        return f"{self.host}/{name}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def host_site(root: Path) -> Iterator[str]:
    """A plain static site on loopback: the website that embeds the widget."""
    port = free_port()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, name="host-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


@dataclasses.dataclass(frozen=True, kw_only=True)
class MessagePath:
    """A database, a gateway, a Faust worker and a relay: the whole path, running."""

    settings: Settings
    cluster: Cluster
    engine: AsyncEngine
    gateway: str


@contextlib.asynccontextmanager
async def message_path(
    services: ServiceSet, root: Path, **changes: Any
) -> AsyncIterator[MessagePath]:
    name = await services.clone_template()
    settings = isolated_settings(services, services.database_url(name), root).replace(**changes)
    await create_topics(settings)
    cluster = Cluster(settings, root)
    assert settings.database_url is not None
    engine = create_engine(settings.database_url, pool_size=2)
    try:
        [gateway] = await cluster.start_path()
        yield MessagePath(settings=settings, cluster=cluster, engine=engine, gateway=gateway)
    finally:
        cluster.stop()
        await engine.dispose()
        await services.drop_database(name)


# Starting the path costs seconds; the tests share one, each with a project of its own.
@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shared_path(
    services: ServiceSet, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MessagePath]:
    async with message_path(services, tmp_path_factory.mktemp("browser-path")) as path:
        yield path


@pytest.fixture
def path_changes() -> dict[str, Any]:
    """Settings a module's private path runs with (override it in the module)."""
    return {}


@pytest_asyncio.fixture(loop_scope="session")
async def private_path(
    services: ServiceSet, tmp_path: Path, path_changes: dict[str, Any]
) -> AsyncIterator[MessagePath]:
    """A path of the test's own: for a test that stops its worker or changes settings."""
    root = tmp_path / "path"
    await asyncio.to_thread(root.mkdir)
    async with message_path(services, root, **path_changes) as path:
        yield path


async def _stack(path: MessagePath, root: Path) -> AsyncIterator[Stack]:
    await asyncio.to_thread(root.mkdir)
    directory = Directory(engine=path.engine)
    signer = TokenSigner(secret=path.settings.secret, ttl=path.settings.token_ttl)
    with host_site(root) as origin:
        project = await directory.create_project(name="Acme", origins=[origin])
        agent = await directory.add_agent(
            project_id=project.id, email=f"ada-{project.id}@acme.test", display_name="Ada"
        )
        yield Stack(
            gateway=path.gateway,
            host=origin,
            host_dir=root,
            project_id=project.id,
            token=signer.issue(agent.id),
            cluster=path.cluster,
            directory=directory,
        )


@pytest_asyncio.fixture(loop_scope="session")
async def stack(shared_path: MessagePath, tmp_path: Path) -> AsyncIterator[Stack]:
    """A project of this test's own, with an agent, a host site, on the shared path."""
    async for made in _stack(shared_path, tmp_path / "site"):
        yield made


@pytest_asyncio.fixture(loop_scope="session")
async def private_stack(private_path: MessagePath, tmp_path: Path) -> AsyncIterator[Stack]:
    async for made in _stack(private_path, tmp_path / "site"):
        yield made


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium() -> AsyncIterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail(
            f"Chromium is not at {CHROMIUM}: `make test` installs it (apt-get install chromium); "
            "or point PARLEY_CHROMIUM at one"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def browser(chromium: Browser) -> AsyncIterator[Browser]:
    """The shared Chromium; the contexts a test opened are closed after it, so no
    socket of one test lingers into the next."""
    try:
        yield chromium
    finally:
        for context in list(chromium.contexts):
            await context.close()


async def new_page(browser: Browser, **options: object) -> tuple[BrowserContext, Page]:
    """A fresh profile (its own localStorage) and a page that fails the test on a JS error."""
    context = await browser.new_context(**options)  # type: ignore[arg-type]
    context.set_default_timeout(WAIT)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # type: ignore[attr-defined]
    return context, page


async def screenshot(page: Page, name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    await page.screenshot(path=str(path))
    return path

"""Real headless Chromium (Debian's, never a downloaded one) against the real message path.

Each test gets the gateway, the Faust worker and the relay as child processes, a
project whose only allowed origin is a separate host site (another port), and an
agent. Host pages are files that a small HTTP server serves from the test's folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.server
import os
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from gateway.tokens import TokenSigner
from parley.embedded import free_port
from parley.settings import Settings
from persistence.directory import Directory
from tests.servers import Cluster, create_topics

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


@pytest.fixture
async def cluster(settings: Settings, tmp_path: Path) -> AsyncIterator[Cluster]:
    await create_topics(settings)
    running = Cluster(settings, tmp_path)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def signer(settings: Settings) -> TokenSigner:
    return TokenSigner(secret=settings.secret, ttl=settings.token_ttl)


@pytest.fixture
async def stack(
    cluster: Cluster, directory: Directory, signer: TokenSigner, tmp_path: Path
) -> AsyncIterator[Stack]:
    root = tmp_path / "site"
    root.mkdir()
    with host_site(root) as origin:
        project = await directory.create_project(name="Acme", origins=[origin])
        agent = await directory.add_agent(
            project_id=project.id, email="ada@acme.test", display_name="Ada"
        )
        [gateway] = await cluster.start_path()
        yield Stack(
            gateway=gateway,
            host=origin,
            host_dir=root,
            project_id=project.id,
            token=signer.issue(agent.id),
            cluster=cluster,
        )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
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

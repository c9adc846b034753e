"""The web clients' files, served under content-hashed URLs with cache headers.

The sources live in ``gateway/web/`` and ship inside the Python package: plain
JavaScript, no build step, no Node.js at run time. At startup the catalog reads
them once, bundles the widget with the vendored Socket.IO client, and names every
asset by a hash of its bytes (``/assets/widget.3f2a….js``), so those URLs can be
cached for a year. Only the two entry points keep stable URLs and short caches:
``/widget.js`` (the one tag a host site embeds, which loads the hashed bundle) and
``/dashboard``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

WEB = Path(__file__).parent / "web"
STATIC = Path(__file__).parent / "static"
HASH_LENGTH = 16  # hex characters of SHA-256 in an asset's name
IMMUTABLE = "public, max-age=31536000, immutable"  # a hashed URL never changes content
LOADER_CACHE = "public, max-age=300"  # seconds a host page may run an old /widget.js
PAGE_CACHE = "no-cache"  # revalidate the dashboard page on every load (ETag)
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
BUNDLE_PLACEHOLDER = "__PARLEY_WIDGET_BUNDLE__"


class AssetError(Exception):
    """A client source is missing or names an asset that does not exist."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _asset(body: bytes, suffix: str) -> Asset:
    digest = hashlib.sha256(body).hexdigest()[:HASH_LENGTH]
    return Asset(body=body, media_type=TYPES[suffix], etag=f'"{digest}"')


def _hashed_name(name: str, asset: Asset) -> str:
    stem, _, suffix = name.partition(".")
    return f"{stem}.{asset.etag.strip(chr(34))}.{suffix}"


def bundle_widget(socket_io: str, widget: str) -> str:
    """The widget and its own Socket.IO client in one function scope.

    The UMD build takes its CommonJS branch when it sees ``module``/``exports``, so
    ``io`` stays local: a host page's own Socket.IO, RequireJS or ``window.io`` is
    neither used nor overwritten.
    """
    return (
        "/*! Parley widget; includes Socket.IO (MIT, see /socket.io.LICENSE) */\n"
        "(function () {\n"
        "var module = { exports: {} }, exports = module.exports, define = undefined;\n"
        f"{socket_io}\n"
        "var io = module.exports;\n"
        f"{widget}\n"
        "})();\n"
    )


class AssetCatalog:
    """Every client file, by hashed URL, built once from the package's sources."""

    def __init__(self, *, web: Path = WEB, static: Path = STATIC) -> None:
        try:
            socket_io = (static / "socket.io.min.js").read_text()
            widget = bundle_widget(socket_io, (web / "widget.js").read_text())
            sources = {
                "widget.js": widget.encode(),
                "socket.io.min.js": socket_io.encode(),
                "dashboard.js": (web / "dashboard.js").read_bytes(),
                "dashboard.css": (web / "dashboard.css").read_bytes(),
            }
            loader_source = (web / "widget-loader.js").read_text()
            page_source = (web / "dashboard.html").read_text()
        except OSError as exc:
            raise AssetError(f"a web client file is missing: {exc}") from exc
        self.assets: dict[str, Asset] = {}
        self.urls: dict[str, str] = {}
        for name, body in sources.items():
            asset = _asset(body, Path(name).suffix)
            hashed = _hashed_name(name, asset)
            self.assets[hashed] = asset
            self.urls[name] = f"/assets/{hashed}"
        if BUNDLE_PLACEHOLDER not in loader_source:
            raise AssetError("widget-loader.js does not name the widget bundle")
        self.loader = _asset(
            loader_source.replace(BUNDLE_PLACEHOLDER, self.urls["widget.js"]).encode(), ".js"
        )
        self.dashboard = _asset(self._fill(page_source).encode(), ".html")

    def _fill(self, page: str) -> str:
        """Replace ``{{asset:name}}`` with the asset's hashed URL."""
        for name, url in self.urls.items():
            page = page.replace(f"{{{{asset:{name}}}}}", url)
        if "{{asset:" in page:
            raise AssetError("dashboard.html names an asset that does not exist")
        return page

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/widget.js", self._serve_loader, methods=["GET", "HEAD"]),
            Route("/dashboard", self._serve_dashboard, methods=["GET", "HEAD"]),
            Route("/dashboard.html", _to_dashboard, methods=["GET", "HEAD"]),
            Route("/assets/{name}", self._serve_asset, methods=["GET", "HEAD"]),
        ]

    async def _serve_loader(self, request: Request) -> Response:
        return _respond(request, self.loader, LOADER_CACHE)

    async def _serve_dashboard(self, request: Request) -> Response:
        return _respond(request, self.dashboard, PAGE_CACHE)

    async def _serve_asset(self, request: Request) -> Response:
        asset = self.assets.get(request.path_params["name"])
        if asset is None:
            return Response("no such asset\n", status_code=404, media_type="text/plain")
        return _respond(request, asset, IMMUTABLE)


async def _to_dashboard(request: Request) -> Response:
    """The demo page's old address; the query (``?token=``) is kept."""
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/dashboard{query}", status_code=301)


def _respond(request: Request, asset: Asset, cache: str) -> Response:
    headers = {"Cache-Control": cache, "ETag": asset.etag, "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else asset.body
    return Response(body, media_type=asset.media_type, headers=headers)

"""The clients' files: hashed URLs cached for a year, stable entry points revalidated."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx

from gateway.assets import WEB, AssetCatalog


async def test_widget_js_loads_a_content_hashed_bundle(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as client:
        loader = await client.get("/widget.js")
        [bundle_url] = re.findall(r"/assets/widget\.[0-9a-f]{16}\.js", loader.text)
        bundle = await client.get(bundle_url)
        again = await client.get("/widget.js", headers={"If-None-Match": loader.headers["etag"]})
        missing = await client.get("/assets/widget.0000000000000000.js")
    assert loader.status_code == 200
    assert loader.headers["content-type"].startswith("text/javascript")
    assert loader.headers["cache-control"] == "public, max-age=300"
    assert bundle.status_code == 200
    assert "immutable" in bundle.headers["cache-control"]
    assert "attachShadow" in bundle.text and "Socket.IO" in bundle.text
    assert again.status_code == 304
    assert missing.status_code == 404


async def test_the_dashboard_names_its_assets_by_hash(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as client:
        page = await client.get("/dashboard")
        old = await client.get("/dashboard.html?token=abc")
        urls = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page.text)
        answers = [await client.get(url) for url in urls]
    assert page.headers["cache-control"] == "no-cache"
    assert sorted(re.sub(r"\.[0-9a-f]{16}", "", url) for url in urls) == [
        "/assets/dashboard.css",
        "/assets/dashboard.js",
        "/assets/socket.io.min.js",
    ]
    assert all(answer.status_code == 200 for answer in answers)
    assert old.status_code == 301 and old.headers["location"] == "/dashboard?token=abc"


def test_a_changed_file_gets_a_new_url(tmp_path: Path) -> None:
    shutil.copytree(WEB, tmp_path, dirs_exist_ok=True)
    before = AssetCatalog(web=tmp_path)
    assert AssetCatalog(web=tmp_path).urls == before.urls  # stable for the same bytes
    widget = tmp_path / "widget.js"
    widget.write_text(widget.read_text() + "\n// changed\n")
    after = AssetCatalog(web=tmp_path)
    assert after.urls["widget.js"] != before.urls["widget.js"]
    assert after.urls["dashboard.js"] == before.urls["dashboard.js"]
    assert after.urls["widget.js"].encode() in after.loader.body

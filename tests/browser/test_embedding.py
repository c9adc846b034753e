"""The widget on somebody else's page: hostile CSS, hostile content, its settings, small screens."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from asyncio.subprocess import PIPE

import pytest
from playwright.async_api import Browser, expect

from gateway.identity import sign
from tests.browser.conftest import Stack, new_page, screenshot
from tests.browser.test_conversation import open_dashboard, open_widget, visitor_says
from tests.servers import ROOT

# A loaded machine makes starting a private path slow.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.asyncio(loop_scope="session"),  # the shared path and browser live there
]

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><b>bold</b> & &amp;'
HOSTILE_CSS = """<style>
* { all: unset !important; }
html { font-size: 80px !important; }
body { font: 96px/3 "Comic Sans MS", cursive !important; color: red !important; }
div, button, textarea, section, form { display: none !important; }
*::before, *::after { content: "!!" !important; }
</style>"""


async def test_content_shows_literally_on_both_sides(browser: Browser, stack: Stack) -> None:
    _, visitor = await new_page(browser)
    _, agent = await new_page(browser)
    await open_widget(visitor, stack.host_page("shop.html"))
    await open_dashboard(agent, stack)

    await visitor_says(visitor, XSS)
    await agent.locator("#conversations button").click()
    await expect(agent.locator("#thread .msg.visitor .bubble")).to_have_text([XSS])
    await expect(agent.locator("#conversations .snippet")).to_have_text([XSS])
    await agent.locator("#reply").fill(f"agent says {XSS}")
    await agent.locator("#reply").press("Enter")
    bubbles = visitor.locator("parley-chat .msg:not(.welcome) .bubble")
    await expect(bubbles).to_have_text([XSS, f"agent says {XSS}"])

    for page in (visitor, agent):
        assert await page.evaluate("window.__xss") is None
        assert await page.locator("parley-chat .bubble img, #thread img, .bubble b").count() == 0
        assert page.js_errors == []  # type: ignore[attr-defined]


async def test_hostile_host_css_leaves_the_widget_intact(browser: Browser, stack: Stack) -> None:
    _, visitor = await new_page(browser, viewport={"width": 1024, "height": 768})
    url = stack.host_page("hostile.html", head=HOSTILE_CSS)
    await visitor.goto(url)
    launcher = visitor.locator("parley-chat .launcher")
    await expect(launcher).to_be_visible()
    box = await launcher.bounding_box()
    assert box is not None and box["width"] == 56 and box["height"] == 56
    assert box["x"] + box["width"] <= 1024 - 16 and box["y"] + box["height"] <= 768 - 16

    await launcher.click()
    panel = visitor.locator("parley-chat .panel")
    await expect(panel).to_be_visible()
    await expect(visitor.locator("parley-chat .conn")).to_have_attribute("data-state", "online")
    panel_box = await panel.bounding_box()
    assert panel_box is not None and panel_box["width"] == 370
    assert panel_box["x"] >= 0 and panel_box["y"] >= 0
    textarea = visitor.locator("parley-chat textarea")
    styles = await textarea.evaluate(
        "t => { const s = getComputedStyle(t); return [s.fontSize, s.display, s.fontFamily]; }"
    )
    assert styles[0] == "15px" and styles[1] != "none" and "Comic" not in styles[2]
    await visitor_says(visitor, "still usable")
    await expect(visitor.locator("parley-chat .msg.mine.sent")).to_have_count(1)
    await screenshot(visitor, "widget-hostile-css")
    # Nor does the widget's CSS leak out: the host's own elements keep the host's rules.
    host_size = await visitor.evaluate("getComputedStyle(document.querySelector('p')).fontSize")
    assert host_size == "96px"


async def test_small_screen_and_keyboard(browser: Browser, stack: Stack) -> None:
    _, visitor = await new_page(browser, viewport={"width": 360, "height": 640})
    await visitor.goto(stack.host_page("phone.html"))
    launcher = visitor.locator("parley-chat .launcher")
    await expect(launcher).to_have_attribute("aria-expanded", "false")
    await launcher.focus()
    await visitor.keyboard.press("Enter")
    await expect(launcher).to_have_attribute("aria-expanded", "true")
    textarea = visitor.locator("parley-chat textarea")
    await expect(textarea).to_be_focused()
    panel_box = await visitor.locator("parley-chat .panel").bounding_box()
    assert panel_box is not None
    assert panel_box["x"] >= 0 and panel_box["x"] + panel_box["width"] <= 360
    await expect(visitor.locator("parley-chat label")).to_have_text("Your message")
    await expect(visitor.locator("parley-chat [role=dialog]")).to_have_attribute(
        "aria-labelledby", f"parley-{stack.project_id}-title"
    )
    await textarea.fill("x" * 4990)
    await expect(visitor.locator("parley-chat .count")).to_have_text("10 characters left")
    await screenshot(visitor, "widget-360px")
    await visitor.keyboard.press("Escape")
    await expect(launcher).to_have_attribute("aria-expanded", "false")
    await expect(launcher).to_be_focused()


async def test_settings_from_the_cli_reach_the_widget_across_origins(
    browser: Browser, stack: Stack
) -> None:
    changes = {"theme": "dark", "headerText": "Acme support", "position": "bottom-left"}
    command = [sys.executable, "-m", "parley.cli", "project", "settings"]
    command += ["--project", str(stack.project_id)]
    for key, value in changes.items():
        command += ["--set", f"{key}={value}"]
    process = await asyncio.create_subprocess_exec(
        *command, env=stack.cluster.env, cwd=ROOT, stdout=PIPE, stderr=PIPE
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert json.loads(out)["settings"]["headerText"] == "Acme support"

    _, visitor = await new_page(browser, viewport={"width": 1024, "height": 768})
    # The settings call is cross-origin (the host site is another port): CORS must allow it.
    async with visitor.expect_response(lambda r: "/settings" in r.url) as answer:
        await visitor.goto(stack.host_page("shop.html"))
    response = await answer.value
    assert response.status == 200
    assert (await response.header_value("access-control-allow-origin")) == stack.host
    await visitor.locator("parley-chat .launcher").click()
    await expect(visitor.locator("parley-chat h2")).to_have_text("Acme support")
    await expect(visitor.locator("parley-chat .root")).to_have_class("root dark left")
    box = await visitor.locator("parley-chat .panel").bounding_box()
    assert box is not None and box["x"] < 100  # bottom-left


async def test_identity_verification_with_the_sites_signature(
    browser: Browser, stack: Stack
) -> None:
    directory = stack.directory
    verified = await directory.create_project(
        name="Verified", origins=[stack.host], require_identity=True
    )
    secret = (await directory.identity_secret(verified.id)).identity_secret
    assert secret is not None
    uid = str(uuid.uuid4())
    signed = stack.host_page(
        "signed.html", project_id=verified.id, visitor_uid=uid, visitor_signature=sign(secret, uid)
    )
    _, visitor = await new_page(browser)
    await open_widget(visitor, signed)
    await visitor_says(visitor, "signed in")
    await expect(visitor.locator("parley-chat .msg.mine.sent")).to_have_count(1)
    # The site's uid is used as given, and not kept as this browser's anonymous one.
    assert (
        await visitor.evaluate(f"localStorage.getItem('parley.{verified.id}.visitorUid')") is None
    )

    _, stranger = await new_page(browser)
    await stranger.goto(stack.host_page("unsigned.html", project_id=verified.id))
    await stranger.locator("parley-chat .launcher").click()
    await expect(stranger.locator("parley-chat .conn")).to_have_attribute("data-state", "offline")
    await expect(stranger.locator("parley-chat .notice")).to_contain_text("verifies identities")

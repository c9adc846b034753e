"""The clients lose the network and reload, and no message is lost or doubled."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.browser.conftest import Stack, new_page
from tests.browser.test_conversation import open_dashboard, open_widget, visitor_says

# A loaded machine makes starting a private path slow.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.asyncio(loop_scope="session"),  # the shared path and browser live there
]

SETTLE = 2.0  # seconds to wait for a stray duplicate after the expected messages arrived
RECONNECT_WAIT = 20_000  # milliseconds for the widget to be back online and resend


async def stored_contents(stack: Stack) -> list[str]:
    """Every message of the project's conversations, from the database through the API."""
    headers = {"Authorization": f"Bearer {stack.token}"}
    base = f"{stack.gateway}/api/projects/{stack.project_id}"
    async with httpx.AsyncClient(headers=headers) as client:
        listing = (await client.get(f"{base}/conversations")).json()
        contents: list[str] = []
        for item in listing["conversations"]:
            page = (await client.get(f"{base}/conversations/{item['id']}/messages")).json()
            contents += [m["content"] for m in page["messages"]]
    return contents


async def wait_stored(stack: Stack, expected: list[str], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while sorted(await stored_contents(stack)) != sorted(expected):
            await asyncio.sleep(0.2)


async def test_messages_typed_offline_arrive_once_when_back_online(
    browser: Browser, stack: Stack
) -> None:
    context, visitor = await new_page(browser)
    await open_widget(visitor, stack.host_page("shop.html"))
    await visitor_says(visitor, "first, online")
    await wait_stored(stack, ["first, online"])

    await context.set_offline(True)
    conn = visitor.locator("parley-chat .conn")
    await expect(conn).to_have_attribute("data-state", "offline")
    await visitor_says(visitor, "second, offline")
    await visitor_says(visitor, "third, offline")
    queued = visitor.locator("parley-chat .msg.mine[data-state='queued']")
    await expect(queued).to_have_count(2)  # the composer kept accepting, nothing was sent
    await asyncio.sleep(1.0)
    assert await stored_contents(stack) == ["first, online"]

    await context.set_offline(False)
    # The widget reconnects on the browser's `online` event; an attempt already in
    # flight (Socket.IO's backoff) must fail first, which on a loaded machine has
    # taken more than Playwright's default 5 s. Arriving once is what is tested.
    await expect(conn).to_have_attribute("data-state", "online", timeout=RECONNECT_WAIT)
    await expect(visitor.locator("parley-chat .msg.mine.sent")).to_have_count(
        3, timeout=RECONNECT_WAIT
    )
    await wait_stored(stack, ["first, online", "second, offline", "third, offline"])
    await asyncio.sleep(SETTLE)
    assert await stored_contents(stack) == ["first, online", "second, offline", "third, offline"]
    await expect(visitor.locator("parley-chat .msg.mine")).to_have_count(3)
    assert visitor.js_errors == []  # type: ignore[attr-defined]


async def test_a_reload_keeps_the_conversation_and_the_offline_queue(
    browser: Browser, stack: Stack
) -> None:
    context, visitor = await new_page(browser)
    _, agent = await new_page(browser)
    url = stack.host_page("shop.html")
    await open_widget(visitor, url)
    await open_dashboard(agent, stack)
    await visitor_says(visitor, "hello before the reload")
    await agent.locator("#conversations button").click()
    await agent.locator("#reply").fill("an answer before the reload")
    await agent.locator("#reply").press("Enter")
    bubbles = visitor.locator("parley-chat .msg:not(.welcome) .bubble")
    await expect(bubbles).to_have_text(["hello before the reload", "an answer before the reload"])
    uid = await visitor.evaluate(f"localStorage.getItem('parley.{stack.project_id}.visitorUid')")

    await visitor.reload()
    # The window was open: it opens again, with the history from the server.
    await expect(visitor.locator("parley-chat .conn")).to_have_attribute("data-state", "online")
    await expect(bubbles).to_have_text(["hello before the reload", "an answer before the reload"])
    reloaded = f"localStorage.getItem('parley.{stack.project_id}.visitorUid')"
    assert await visitor.evaluate(reloaded) == uid

    # Typed offline, then the tab closes: the queue is in localStorage, sent from the next page.
    await context.set_offline(True)
    await expect(visitor.locator("parley-chat .conn")).to_have_attribute("data-state", "offline")
    await visitor_says(visitor, "typed offline, then the tab closed")
    await expect(visitor.locator("parley-chat .msg.mine[data-state='queued']")).to_have_count(1)
    await visitor.close()
    await context.set_offline(False)
    again = await context.new_page()
    await again.goto(url)
    await expect(again.locator("parley-chat .msg.mine.sent")).to_have_count(2)
    expected = [
        "hello before the reload",
        "an answer before the reload",
        "typed offline, then the tab closed",
    ]
    await wait_stored(stack, expected)
    await asyncio.sleep(SETTLE)
    assert sorted(await stored_contents(stack)) == sorted(expected)
    await expect(agent.locator("#thread .msg .bubble")).to_have_text(expected)


async def test_a_dashboard_whose_network_drops_catches_up(browser: Browser, stack: Stack) -> None:
    _, visitor = await new_page(browser)
    agent_context, agent = await new_page(browser)
    await open_widget(visitor, stack.host_page("shop.html"))
    await open_dashboard(agent, stack)
    await visitor_says(visitor, "message 1")
    await agent.locator("#conversations button").click()
    thread = agent.locator("#thread .msg.visitor .bubble")
    await expect(thread).to_have_text(["message 1"])

    await agent_context.set_offline(True)
    await expect(agent.locator("#status")).to_have_attribute("data-state", "offline")
    for n in range(2, 6):
        await visitor_says(visitor, f"message {n}")
    await wait_stored(stack, [f"message {n}" for n in range(1, 6)])
    await asyncio.sleep(0.5)
    await expect(thread).to_have_text(["message 1"])  # really cut off: nothing arrived live

    await agent_context.set_offline(False)
    await expect(agent.locator("#status")).to_have_attribute("data-state", "online")
    await expect(thread).to_have_text([f"message {n}" for n in range(1, 6)])
    await expect(agent.locator("#conversations button .snippet")).to_have_text(["message 5"])
    # And it is live again afterwards, each message once.
    await visitor_says(visitor, "message 6")
    await expect(thread).to_have_text([f"message {n}" for n in range(1, 7)])
    assert agent.js_errors == []  # type: ignore[attr-defined]

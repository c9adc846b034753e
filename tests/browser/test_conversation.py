"""A visitor and an agent hold a conversation through the two web clients."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import Stack, new_page, screenshot

# A loaded machine makes starting a private path slow.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.asyncio(loop_scope="session"),  # the shared path and browser live there
]


async def open_widget(page: Page, url: str) -> None:
    await page.goto(url)
    await page.locator("parley-chat .launcher").click()
    await expect(page.locator("parley-chat .conn")).to_have_attribute("data-state", "online")


async def visitor_says(page: Page, text: str) -> None:
    await page.locator("parley-chat textarea").fill(text)
    await page.locator("parley-chat textarea").press("Enter")


async def open_dashboard(page: Page, stack: Stack) -> None:
    await page.goto(f"{stack.gateway}/dashboard?token={stack.token}&projectId={stack.project_id}")
    await expect(page.locator("#status")).to_have_attribute("data-state", "online")


async def test_visitor_and_agent_talk_live(browser: Browser, stack: Stack) -> None:
    _, visitor = await new_page(browser, viewport={"width": 900, "height": 720})
    _, agent = await new_page(browser, viewport={"width": 1280, "height": 720})
    await open_dashboard(agent, stack)
    await open_widget(visitor, stack.host_page("shop.html"))

    await visitor_says(visitor, "Do you ship to Norway?")
    mine = visitor.locator("parley-chat .msg.mine")
    await expect(mine).to_have_count(1)
    await expect(mine).to_have_attribute("data-state", "sent")

    # The dashboard shows it live: no reload, the list and the thread.
    item = agent.locator("#conversations button")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("Do you ship to Norway?")
    await item.click()
    await expect(agent.locator("#thread .msg.visitor .bubble")).to_have_text(
        ["Do you ship to Norway?"]
    )
    await expect(agent.locator("#viewing")).to_contain_text("shop.html")
    await expect(agent.locator("#pages li").first).to_contain_text("shop.html")

    await agent.locator("#reply").fill("Yes, in 3 to 5 days.")
    await agent.locator("#reply").press("Enter")
    theirs = visitor.locator("parley-chat .msg.theirs:not(.welcome) .bubble")
    await expect(theirs).to_have_text(["Yes, in 3 to 5 days."])
    # The widget shows the reply, so it marked it read; the agent sees the ticks.
    await expect(agent.locator("#thread .msg.agent .meta .read")).to_have_count(1)
    # The agent opened the conversation, so the visitor's message is marked read.
    await expect(mine).to_have_attribute("data-state", "read")

    await screenshot(visitor, "widget")
    await screenshot(agent, "dashboard")
    assert visitor.js_errors == [] and agent.js_errors == []  # type: ignore[attr-defined]


async def test_the_dashboard_list_typing_context_and_filter(browser: Browser, stack: Stack) -> None:
    _, ann = await new_page(browser)
    _, bob = await new_page(browser)
    _, agent = await new_page(browser, viewport={"width": 1280, "height": 720})
    await open_dashboard(agent, stack)
    await open_widget(ann, stack.host_page("ann.html"))
    await open_widget(bob, stack.host_page("bob.html"))
    await visitor_says(ann, "ann here")
    items = agent.locator("#conversations button")
    await expect(items).to_have_count(1)
    await items.first.click()
    await visitor_says(bob, "bob here")
    await visitor_says(bob, "bob again")
    await visitor_says(bob, "bob a third time")
    # Newest activity first, with the unread count of the conversation not open.
    await expect(items.locator(".snippet")).to_have_text(["bob a third time", "ann here"])
    await expect(items.first.locator(".badge")).to_have_text("3")
    await expect(items.nth(1).locator(".badge")).to_have_count(0)

    # Typing both ways, and the page the visitor moves to in a single-page app.
    await ann.locator("parley-chat textarea").fill("I am typ")
    await expect(agent.locator("#typing")).to_have_text("Visitor is typing…")
    await agent.locator("#reply").fill("Let me check")
    await expect(ann.locator("parley-chat .typing")).to_have_text("Ada is typing…")
    await ann.evaluate("history.pushState({}, '', '/checkout?step=2')")
    await expect(agent.locator("#viewing")).to_contain_text("/checkout?step=2")

    await ann.locator("parley-chat textarea").fill("")  # stops typing
    await expect(agent.locator("#typing")).to_have_text("")
    # Closing moves it out of the open list and into the closed one.
    await agent.locator("#close").click()
    await expect(items.locator(".snippet")).to_have_text(["bob a third time"])
    await agent.locator("#filter").select_option("closed")
    await expect(items.locator(".snippet")).to_have_text(["ann here"])
    assert agent.js_errors == []  # type: ignore[attr-defined]

"""``resync``: a gateway that lost its event subscription tells its sockets to catch up.

Playwright stands between the page and the gateway's WebSocket: it drops the live
events the page would have missed, then delivers a ``resync`` as the gateway sends it.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable

import httpx
import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from tests import clients
from tests.browser.conftest import Stack, new_page
from tests.browser.test_conversation import open_dashboard, open_widget, visitor_says
from tests.browser.test_reliability import stored_contents, wait_stored

# A loaded machine makes starting a private path slow.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.asyncio(loop_scope="session"),  # the shared path and browser live there
]

RESYNC = '42["resync"]'  # an Engine.IO message carrying the Socket.IO event, no payload


async def conversation_ids(stack: Stack) -> list[int]:
    headers = {"Authorization": f"Bearer {stack.token}"}
    url = f"{stack.gateway}/api/projects/{stack.project_id}/conversations"
    async with httpx.AsyncClient(headers=headers) as client:
        return [item["id"] for item in (await client.get(url)).json()["conversations"]]


class Tap:
    """The page's Socket.IO connection, with server→page frames dropped while asked."""

    def __init__(self) -> None:
        self.drop: Callable[[str], bool] = lambda frame: False
        self.page_side: WebSocketRoute | None = None
        self.sent: list[str] = []  # page→server frames, in order

    async def attach(self, page: Page) -> None:
        def route(ws: WebSocketRoute) -> None:
            server = ws.connect_to_server()
            self.page_side = ws

            def to_page(frame: str | bytes) -> None:
                if isinstance(frame, bytes) or not self.drop(frame):
                    ws.send(frame)

            def to_server(frame: str | bytes) -> None:
                if isinstance(frame, str):
                    self.sent.append(frame)
                server.send(frame)

            server.on_message(to_page)
            ws.on_message(to_server)

        await page.route_web_socket(re.compile(r".*/socket\.io/.*"), route)

    def resync(self) -> None:
        assert self.page_side is not None, "the page never connected"
        self.page_side.send(RESYNC)


async def test_a_dashboard_catches_up_on_resync(browser: Browser, stack: Stack) -> None:
    _, visitor = await new_page(browser)
    _, agent = await new_page(browser)
    tap = Tap()
    await tap.attach(agent)
    await open_dashboard(agent, stack)
    await open_widget(visitor, stack.host_page("shop.html"))
    await visitor_says(visitor, "before")
    await agent.locator("#conversations button").click()
    thread = agent.locator("#thread .msg.visitor .bubble")
    await expect(thread).to_have_text(["before"])

    tap.drop = lambda frame: frame.startswith('42["newMessage"')
    await visitor_says(visitor, "missed 1")
    await visitor_says(visitor, "missed 2")
    await wait_stored(stack, ["before", "missed 1", "missed 2"])
    await expect(thread).to_have_text(["before"])  # the live events never came

    tap.drop = lambda frame: False
    tap.resync()
    await expect(thread).to_have_text(["before", "missed 1", "missed 2"])
    assert agent.js_errors == []  # type: ignore[attr-defined]


async def test_a_widget_catches_up_and_resends_on_resync(
    browser: Browser, private_stack: Stack
) -> None:
    stack = private_stack  # its worker is stopped halfway
    _, visitor = await new_page(browser)
    tap = Tap()
    await tap.attach(visitor)
    await open_widget(visitor, stack.host_page("shop.html"))
    await visitor_says(visitor, "hello")
    await expect(visitor.locator("parley-chat .msg.mine.sent")).to_have_count(1)

    # The agent's reply is lost on the way to the widget.
    tap.drop = lambda frame: frame.startswith('42["agentReplied"')
    [conversation] = await conversation_ids(stack)
    dash = await clients.dashboard(stack.gateway, stack.token, stack.project_id)
    try:
        reply = {"conversationId": conversation, "content": "a reply", "tempId": str(uuid.uuid4())}
        assert await dash.call("sendReply", reply) == {"ok": True}
    finally:
        await dash.close()
    await wait_stored(stack, ["hello", "a reply"])
    await expect(visitor.locator("parley-chat .msg.theirs:not(.welcome)")).to_have_count(0)

    # With no worker, a message is accepted by the broker but not stored: unconfirmed.
    [worker] = [child for child in stack.cluster.children if child.name == "worker"]
    worker.stop()
    await visitor_says(visitor, "unconfirmed")
    pending = visitor.locator("parley-chat .msg.mine.accepted")
    await expect(pending).to_have_count(1)
    temp_id = await pending.get_attribute("data-temp-id")
    assert temp_id is not None

    tap.drop = lambda frame: False
    tap.resync()
    bubbles = visitor.locator("parley-chat .msg:not(.welcome) .bubble")
    await expect(bubbles).to_have_text(["hello", "a reply", "unconfirmed"])
    resent = [frame for frame in tap.sent if '"sendMessage"' in frame and temp_id in frame]
    async with asyncio.timeout(10):
        while len(resent) < 2:
            await asyncio.sleep(0.1)
            resent = [frame for frame in tap.sent if '"sendMessage"' in frame and temp_id in frame]
    assert len(resent) == 2  # once typed, once on resync: the same tempId

    await stack.cluster.worker("worker-again")
    await expect(visitor.locator("parley-chat .msg.mine.sent")).to_have_count(2)
    await wait_stored(stack, ["hello", "a reply", "unconfirmed"])
    await asyncio.sleep(2.0)
    assert sorted(await stored_contents(stack)) == ["a reply", "hello", "unconfirmed"]

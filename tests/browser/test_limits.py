"""The widget shows the server's refusals: a rate limit with its wait, and a retry."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.browser.conftest import Stack, new_page
from tests.browser.test_conversation import open_widget, visitor_says
from tests.browser.test_reliability import wait_stored

# A loaded machine makes starting a private path slow.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.asyncio(loop_scope="session"),  # the shared path and browser live there
]

WINDOW = 4  # seconds of the rate-limit window in this test


@pytest.fixture
def path_changes() -> dict[str, Any]:
    return {"rate_limit_count": 2, "rate_limit_window": WINDOW}


async def test_a_rate_limited_message_waits_then_retries_with_its_tempid(
    browser: Browser, private_stack: Stack
) -> None:
    stack = private_stack
    _, visitor = await new_page(browser)
    await open_widget(visitor, stack.host_page("shop.html"))
    for n in (1, 2, 3):
        await visitor_says(visitor, f"message {n}")
    failed = visitor.locator("parley-chat .msg.mine.failed")
    await expect(failed).to_have_count(1)
    await expect(failed.locator(".bubble")).to_have_text("message 3")
    retry = failed.locator("button")
    await expect(retry).to_have_text(re.compile(r"Retry in \d+s"))
    await expect(retry).to_be_disabled()
    temp_id = await failed.get_attribute("data-temp-id")

    await expect(retry).to_have_text("Retry", timeout=(WINDOW + 3) * 1000)
    await retry.click()
    sent = visitor.locator(f"parley-chat .msg.mine.sent[data-temp-id='{temp_id}']")
    await expect(sent).to_have_count(1)
    await wait_stored(stack, ["message 1", "message 2", "message 3"])

    await visitor.locator("parley-chat textarea").fill("y" * 4800)
    await expect(visitor.locator("parley-chat .count")).to_have_text("200 characters left")

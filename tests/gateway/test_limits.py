"""Flooding: per-address connect limits, new visitors per address, a budget per socket.

Every flood here goes to a gateway on loopback and is bounded in count. Another
client address is simulated through X-Forwarded-For from a trusted proxy (the
test's own 127.0.0.1), which also shows that header is honoured only then.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.errors import RateLimited
from gateway.limits import (
    AddressLimits,
    EventBudget,
    Throttle,
    client_address,
    parse_networks,
)
from parley.settings import Settings
from persistence.directory import Project
from persistence.store import MessageStore
from tests import clients
from tests.factories import incoming, uid
from tests.servers import gateway_in_process

ELSEWHERE = {"X-Forwarded-For": "203.0.113.9"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def environ(peer: str, forwarded: str | None = None) -> dict[str, object]:
    env: dict[str, object] = {"asgi.scope": {"client": (peer, 5555)}, "REMOTE_ADDR": "127.0.0.1"}
    if forwarded is not None:
        env["HTTP_X_FORWARDED_FOR"] = forwarded
    return env


def test_the_client_address_comes_from_the_scope_and_trusted_proxies_only() -> None:
    proxies = parse_networks(["10.0.0.0/8"])
    assert client_address(environ("198.51.100.7"), trusted_proxies=()) == "198.51.100.7"
    # An untrusted peer's X-Forwarded-For is whatever it chose to say.
    spoofed = environ("198.51.100.7", "1.2.3.4")
    assert client_address(spoofed, trusted_proxies=proxies) == "198.51.100.7"
    # Through trusted proxies, the right-most address that is not one of them.
    chain = environ("10.0.0.2", "1.2.3.4, 203.0.113.5, 10.0.0.9")
    assert client_address(chain, trusted_proxies=proxies) == "203.0.113.5"
    assert client_address(environ("10.0.0.2"), trusted_proxies=proxies) == "10.0.0.2"


def test_connect_rate_and_open_sockets_per_address() -> None:
    clock = Clock()
    limits = AddressLimits(connect_burst=3, connect_rate=1.0, max_sockets=2, clock=clock)
    limits.admit("a", "1.1.1.1")
    limits.admit("b", "1.1.1.1")
    with pytest.raises(RateLimited) as raised:
        limits.admit("c", "1.1.1.1")
    assert "open connections" in raised.value.message
    limits.admit("x", "2.2.2.2")  # another address is not affected
    limits.release("a")
    limits.admit("c", "1.1.1.1")  # third connect of the burst
    limits.release("b")
    with pytest.raises(RateLimited) as raised:
        limits.admit("d", "1.1.1.1")  # a free socket slot, but the burst is spent
    assert raised.value.extra["retryAfter"] == 1
    clock.now += 1.0
    limits.admit("d", "1.1.1.1")
    assert limits.open_sockets("1.1.1.1") == 2


def test_each_event_costs_the_socket_its_price() -> None:
    clock = Clock()
    budget = EventBudget(burst=10, rate=2.0, clock=clock)
    budget.spend("s", "identify")  # 5
    budget.spend("s", "identify")  # 10
    with pytest.raises(RateLimited) as raised:
        budget.spend("s", "markRead")
    assert raised.value.extra["retryAfter"] == 1
    budget.spend("other", "identify")  # sockets are independent
    clock.now += 0.5
    budget.spend("s", "markRead")
    budget.forget("s")
    budget.spend("s", "identify")  # a new socket starts full


def test_throttle_is_a_sliding_window() -> None:
    clock = Clock()
    throttle = Throttle(count=2, window=60.0, clock=clock)
    throttle.check("k")
    clock.now += 30
    throttle.check("k")
    with pytest.raises(RateLimited) as raised:
        throttle.check("k")
    assert raised.value.extra["retryAfter"] == 30
    clock.now += 30.5
    throttle.check("k")


async def test_a_connect_flood_is_refused_and_others_are_still_served(
    settings: Settings, project: Project
) -> None:
    limited = settings.replace(connect_burst=5, connect_rate=0.01, trusted_proxies=("127.0.0.1",))
    async with gateway_in_process(limited) as url:
        tabs = [await clients.visitor(url, project.id, uid(), identify=False) for _ in range(5)]
        for _ in range(3):  # bounded: a few more attempts
            error = await clients.refused(url, auth={"projectId": project.id, "visitorUid": uid()})
            assert error["code"] == "rate_limited" and error["retryAfter"] >= 1
        other = await clients.visitor(url, project.id, uid(), headers=ELSEWHERE)
        ack = await other.call("sendMessage", {"content": "hi", "tempId": str(uuid.uuid4())})
        assert ack == {"ok": True}
        for tab in [*tabs, other]:
            await tab.close()


async def test_open_sockets_per_address_are_capped(settings: Settings, project: Project) -> None:
    limited = settings.replace(max_sockets_per_address=3, trusted_proxies=("127.0.0.1",))
    async with gateway_in_process(limited) as url:
        visitor = uid()
        tabs = [await clients.visitor(url, project.id, visitor) for _ in range(3)]
        error = await clients.refused(url, auth={"projectId": project.id, "visitorUid": visitor})
        assert error["code"] == "rate_limited" and "open connections" in error["message"]
        other = await clients.visitor(url, project.id, uid(), headers=ELSEWHERE)
        await tabs.pop().close()
        tabs.append(await clients.visitor(url, project.id, visitor))  # a slot came back
        for tab in [*tabs, other]:
            await tab.close()


async def test_new_uids_from_one_address_are_limited_per_project(
    settings: Settings, project: Project
) -> None:
    """A fresh uid used to buy a fresh message allowance; now one address gets so many."""
    limited = settings.replace(new_visitor_limit=3, trusted_proxies=("127.0.0.1",))
    async with gateway_in_process(limited) as url:
        known = [uid() for _ in range(3)]
        for visitor in known:
            await (await clients.visitor(url, project.id, visitor)).close()
        error = await clients.refused(url, auth={"projectId": project.id, "visitorUid": uid()})
        assert error["code"] == "rate_limited" and error["retryAfter"] > 0
        # The same limit when the uid comes with identify instead of the auth.
        widget = await clients.visitor(url, project.id, None)
        ack = await widget.call("identify", {"projectId": project.id, "visitorUid": uid()})
        assert ack["ok"] is False and ack["error"]["code"] == "rate_limited"
        await widget.close()
        # Known visitors come back freely; other addresses are not affected.
        await (await clients.visitor(url, project.id, known[0])).close()
        await (await clients.visitor(url, project.id, uid(), headers=ELSEWHERE)).close()


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("markRead", {"upToSeq": 0}),
        ("markDelivered", {"upToSeq": 0}),
        ("visitorIsTyping", {"isTyping": True}),
        ("identify", {"lastSeq": 0}),
        ("updateContext", {"currentUrl": "https://shop.example/"}),
        ("sendMessage", {"content": "", "tempId": "x"}),
    ],
)
async def test_every_visitor_event_spends_the_sockets_budget(
    settings: Settings, project: Project, event: str, payload: dict[str, object]
) -> None:
    limited = settings.replace(socket_event_burst=10.0, socket_event_rate=0.2)
    async with gateway_in_process(limited) as url:
        tab = await clients.visitor(url, project.id, uid())  # identify spent 5
        acks = [await tab.call(event, payload) for _ in range(25)]
        refused = [ack for ack in acks if ack.get("error", {}).get("code") == "rate_limited"]
        assert refused, acks
        assert refused[0]["ok"] is False and refused[0]["error"]["retryAfter"] >= 1
        neighbour = await clients.visitor(url, project.id, uid())
        assert await neighbour.call("markRead", {"upToSeq": 0}) == {"ok": True}
        await tab.close()
        await neighbour.close()


async def test_dashboard_events_spend_the_sockets_budget(
    settings: Settings, project: Project, agent_token: str
) -> None:
    limited = settings.replace(socket_event_burst=6.0, socket_event_rate=0.2)
    async with gateway_in_process(limited) as url:
        dash = await clients.dashboard(url, agent_token)
        acks = [await dash.call("joinProjectRoom", {"projectId": project.id}) for _ in range(4)]
        assert [a["status"] for a in acks] == ["ok", "ok", "ok", "error"]
        assert acks[-1]["error"]["code"] == "rate_limited" and acks[-1]["ok"] is False
        ack = await dash.call("sync", {"projectId": project.id})
        assert ack["error"]["code"] == "rate_limited"
        await dash.close()


async def test_update_context_stores_only_changes_and_at_most_n_per_minute(
    settings: Settings, project: Project, engine: AsyncEngine
) -> None:
    visitor = uid()
    await MessageStore(engine=engine).append([incoming(project.id, visitor, "hi")])
    limited = settings.replace(context_updates_per_minute=3)
    async with gateway_in_process(limited) as url:
        tab = await clients.visitor(url, project.id, visitor)
        page = {"currentUrl": "https://shop.example/a"}
        assert await tab.call("updateContext", page) == {"ok": True, "stored": True}
        for _ in range(5):  # the same page again: nothing written, nothing fanned out
            assert await tab.call("updateContext", page) == {"ok": True, "stored": False}
        for name in ("b", "c"):
            ack = await tab.call("updateContext", {"currentUrl": f"https://shop.example/{name}"})
            assert ack == {"ok": True, "stored": True}
        ack = await tab.call("updateContext", {"currentUrl": "https://shop.example/d"})
        assert ack["ok"] is False and ack["error"]["code"] == "rate_limited"
        assert 0 < ack["error"]["retryAfter"] <= 60
        await tab.close()

"""Limits kept in this gateway's memory: per client address at connect, per socket per event.

They run before anything touches PostgreSQL or Redis, so a flood from one
address costs a dictionary lookup. Per-address limits are per gateway; behind a
load balancer that spreads one address over N gateways, the effective limit is
N times the setting.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import Counter

from gateway.errors import RateLimited
from parley.settings import Settings

MAX_TRACKED_ADDRESSES = 100_000  # addresses whose connect buckets are remembered
MAX_FORWARDED_HOPS = 16  # X-Forwarded-For entries read at most

# What each event costs a socket's bucket; anything not listed costs DEFAULT_EVENT_COST.
EVENT_COSTS: Mapping[str, float] = {
    "identify": 5.0,  # reads history
    "sync": 3.0,  # reads conversations and messages
    "joinProjectRoom": 2.0,
    "updateContext": 2.0,  # writes a row and fans out
    "sendMessage": 1.0,
    "sendReply": 1.0,
    "markRead": 1.0,
    "markDelivered": 1.0,
    "visitorIsTyping": 0.5,
    "agentTyping": 0.5,
}
DEFAULT_EVENT_COST = 1.0

REFUSED = Counter(
    "parley_gateway_limited_total", "Connects and events refused by a limit", ["limit"]
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``"10.0.0.1"`` or ``"10.0.0.0/8"``; ValueError on anything else."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(environ: Mapping[str, Any], *, trusted_proxies: tuple[Network, ...]) -> str:
    """The peer from the ASGI scope; X-Forwarded-For only when the peer is a trusted proxy.

    python-socketio's environ has a fixed REMOTE_ADDR, so the scope is the source.
    Walking X-Forwarded-For from the right, the first address that is not a
    trusted proxy is the client: entries further left are whatever the client said.
    """
    scope = environ.get("asgi.scope") or {}
    peer = (scope.get("client") or ("unknown", 0))[0]
    if not trusted_proxies or not _trusted(peer, trusted_proxies):
        return str(peer)
    forwarded = str(environ.get("HTTP_X_FORWARDED_FOR", ""))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()][-MAX_FORWARDED_HOPS:]
    for hop in reversed(hops):
        if not _trusted(hop, trusted_proxies):
            return hop
    return hops[0] if hops else str(peer)


@dataclasses.dataclass(kw_only=True, slots=True)
class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, cost: float, now: float) -> float:
        """0 when taken, else the seconds until ``cost`` tokens are there."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate if self.rate > 0 else math.inf


def _retry_after(wait: float) -> int:
    return max(1, math.ceil(wait)) if math.isfinite(wait) else 3600


class AddressLimits:
    """Connection rate and open sockets per client address."""

    def __init__(
        self,
        *,
        connect_burst: int,
        connect_rate: float,
        max_sockets: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = connect_burst
        self._rate = connect_rate
        self._max_sockets = max_sockets
        self._clock = clock
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()
        self._open: collections.Counter[str] = collections.Counter()
        self._by_sid: dict[str, str] = {}

    def admit(self, sid: str, address: str) -> None:
        """Count the socket against its address, or raise :class:`RateLimited`."""
        if self._open[address] >= self._max_sockets:
            REFUSED.labels("sockets_per_address").inc()
            raise RateLimited(
                f"too many open connections from your address (limit {self._max_sockets})",
                retryAfter=_retry_after(1 / self._rate if self._rate > 0 else math.inf),
            )
        now = self._clock()
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = TokenBucket(
                capacity=self._burst, rate=self._rate, tokens=self._burst, updated=now
            )
            self._buckets[address] = bucket
            while len(self._buckets) > MAX_TRACKED_ADDRESSES:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(address)
        wait = bucket.take(1.0, now)
        if wait:
            REFUSED.labels("connect_rate").inc()
            raise RateLimited(
                "too many connections from your address; retry later",
                retryAfter=_retry_after(wait),
            )
        self._open[address] += 1
        self._by_sid[sid] = address

    def release(self, sid: str) -> None:
        address = self._by_sid.pop(sid, None)
        if address is None:
            return
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def open_sockets(self, address: str) -> int:
        return self._open[address]


class EventBudget:
    """A token bucket per socket: every event costs its price, refused when it runs dry."""

    def __init__(
        self,
        *,
        burst: float,
        rate: float,
        costs: Mapping[str, float] = EVENT_COSTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._rate = rate
        self._costs = costs
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def spend(self, sid: str, event: str) -> None:
        """Raise :class:`RateLimited` with ``retryAfter`` when the socket is over its budget."""
        now = self._clock()
        bucket = self._buckets.get(sid)
        if bucket is None:
            bucket = TokenBucket(
                capacity=self._burst, rate=self._rate, tokens=self._burst, updated=now
            )
            self._buckets[sid] = bucket
        wait = bucket.take(self._costs.get(event, DEFAULT_EVENT_COST), now)
        if wait:
            REFUSED.labels("socket_events").inc()
            raise RateLimited(
                f"too many events on this connection; retry in {_retry_after(wait)}s",
                retryAfter=_retry_after(wait),
            )

    def forget(self, sid: str) -> None:
        self._buckets.pop(sid, None)


class Throttle:
    """At most ``count`` actions per ``window`` seconds per key (a sliding log in memory)."""

    def __init__(
        self, *, count: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._count = count
        self._window = window
        self._clock = clock
        self._log: dict[str, collections.deque[float]] = {}

    def check(self, key: str) -> None:
        now = self._clock()
        log = self._log.setdefault(key, collections.deque())
        while log and log[0] <= now - self._window:
            log.popleft()
        if len(log) >= self._count:
            REFUSED.labels("throttle").inc()
            wait = log[0] + self._window - now
            raise RateLimited(
                f"at most {self._count} per {self._window:g}s; retry in {_retry_after(wait)}s",
                retryAfter=_retry_after(wait),
            )
        log.append(now)

    def forget(self, key: str) -> None:
        self._log.pop(key, None)


CONTEXT_WINDOW = 60.0  # seconds: updateContext is limited per minute


@dataclasses.dataclass(frozen=True, kw_only=True)
class SocketLimits:
    """This gateway's in-memory limits, built once from the settings."""

    trusted_proxies: tuple[Network, ...]
    addresses: AddressLimits
    events: EventBudget
    context: Throttle

    @classmethod
    def from_settings(cls, settings: Settings) -> SocketLimits:
        return cls(
            trusted_proxies=parse_networks(settings.trusted_proxies),
            addresses=AddressLimits(
                connect_burst=settings.connect_burst,
                connect_rate=settings.connect_rate,
                max_sockets=settings.max_sockets_per_address,
            ),
            events=EventBudget(burst=settings.socket_event_burst, rate=settings.socket_event_rate),
            context=Throttle(count=settings.context_updates_per_minute, window=CONTEXT_WINDOW),
        )

    def forget(self, sid: str) -> None:
        self.addresses.release(sid)
        self.events.forget(sid)
        self.context.forget(sid)

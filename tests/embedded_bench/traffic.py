"""Open-loop visitor traffic through the gateway, measured at the dashboard.

Visitors send ``sendMessage`` at a fixed total rate whatever the answers do; a
dashboard in the project room records when each ``newMessage`` arrives. Per
window it reports how many were sent, acked, delivered, and the latency from
the emit to the dashboard. It keeps only what is still pending and the acked
tempIds (16 bytes each), so a million messages fit in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from typing import Any

import aiohttp
import asyncpg

from tests.bench.wire import Disconnected, SocketClient

RESEND_AFTER = 1.0  # seconds before a refused message is sent again with its tempId
ACK_WAIT = 60.0  # seconds a send waits for its ack before it is sent again
RECONNECT_AFTER = 1.0  # seconds before a closed socket is connected again
TICK = 0.005  # seconds between two looks at the send schedule


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


@dataclasses.dataclass
class Window:
    sent: int = 0
    acked: int = 0
    refused: int = 0
    latencies_ms: list[float] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        lat = self.latencies_ms
        return (
            f"sent {self.sent} acked {self.acked} refused {self.refused} delivered {len(lat)}"
            f"  latency p50 {percentile(lat, 0.5):.1f} ms p99 {percentile(lat, 0.99):.1f} ms"
            f" max {max(lat, default=float('nan')):.1f} ms"
        )


class Traffic:
    """Visitors and one dashboard on the benchmark's lean Socket.IO client.

    The soak runs for hours at a steady rate on the machine it measures, so its
    client must cost little: python-socketio's client spends a task and several
    layers on every packet. A socket that closes is connected again (the
    dashboard rejoins its room), as the widget and the dashboard do.
    """

    def __init__(self, *, url: str, project_id: int, token: str, visitors: int, tag: str) -> None:
        self.url = url
        self.project_id = project_id
        self.token = token
        self.tag = tag
        self.visitor_count = visitors
        self.visitors: list[SocketClient] = []
        self._uids: list[str] = []
        self._session: aiohttp.ClientSession | None = None
        self._dashboard: SocketClient | None = None
        self._dashboard_keeper: asyncio.Task[None] | None = None
        self._reconnecting: dict[int, asyncio.Task[SocketClient]] = {}
        self.emitted: dict[str, float] = {}
        self.acked: set[bytes] = set()
        self.delivered = 0
        self.window = Window()
        self.disconnects = 0
        self.resyncs = 0
        self._background: set[asyncio.Task[None]] = set()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "connect() first"
        return self._session

    async def connect(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self._dashboard = await self._connect_dashboard()
        self._dashboard_keeper = asyncio.create_task(self._keep_dashboard(), name="soak-dashboard")
        self._uids = [str(uuid.uuid4()) for _ in range(self.visitor_count)]
        for index in range(self.visitor_count):
            self.visitors.append(await self._connect_visitor(index))

    async def _connect_dashboard(self) -> SocketClient:
        client = await SocketClient.connect(
            self.session, self.url, {"token": self.token}, self._on_dashboard_event
        )
        joined = await client.call("joinProjectRoom", {"projectId": self.project_id})
        if not isinstance(joined, dict) or joined.get("status") != "ok":
            raise RuntimeError(f"joinProjectRoom answered {joined!r}")
        return client

    async def _keep_dashboard(self) -> None:
        while True:
            assert self._dashboard is not None
            await self._dashboard.closed.wait()
            self.disconnects += 1
            while True:
                await asyncio.sleep(RECONNECT_AFTER)
                try:
                    self._dashboard = await self._connect_dashboard()
                    break
                except (OSError, aiohttp.ClientError, TimeoutError, RuntimeError):
                    continue

    async def _connect_visitor(self, index: int) -> SocketClient:
        auth = {"projectId": self.project_id, "visitorUid": self._uids[index]}
        client = await SocketClient.connect(self.session, self.url, auth)
        await client.call("identify", auth)
        return client

    async def _visitor(self, index: int) -> SocketClient:
        """The visitor's socket, connected again (once, shared) if it closed."""
        client = self.visitors[index]
        if not client.closed.is_set():
            return client
        task = self._reconnecting.get(index)
        if task is None:
            self.disconnects += 1
            task = asyncio.create_task(self._reconnect_visitor(index), name="soak-reconnect")
            self._reconnecting[index] = task
        return await asyncio.shield(task)

    async def _reconnect_visitor(self, index: int) -> SocketClient:
        try:
            while True:
                await asyncio.sleep(RECONNECT_AFTER)
                try:
                    self.visitors[index] = await self._connect_visitor(index)
                    return self.visitors[index]
                except (OSError, aiohttp.ClientError, TimeoutError, Disconnected):
                    continue
        finally:
            self._reconnecting.pop(index, None)

    def _on_dashboard_event(self, event: str, data: Any, at: float) -> None:
        if event == "resync":
            self.resyncs += 1
        if event != "newMessage" or not isinstance(data, dict):
            return
        temp_id = data.get("tempId")
        emitted = self.emitted.pop(temp_id, None) if temp_id else None
        if emitted is not None:
            self.delivered += 1
            self.window.latencies_ms.append((at - emitted) * 1000)

    def _send(self, index: int, temp_id: str) -> None:
        self.emitted.setdefault(temp_id, time.perf_counter())
        task = asyncio.create_task(self._deliver(index, temp_id), name="soak-send")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _deliver(self, index: int, temp_id: str) -> None:
        """Send until acked, with the same tempId each time, as the widget does."""
        slot = index % self.visitor_count
        payload = {"content": f"{self.tag} {index}", "tempId": temp_id}
        while True:
            try:
                client = await self._visitor(slot)
                answer = await client.call("sendMessage", payload, timeout=ACK_WAIT)
            except (Disconnected, TimeoutError, OSError, aiohttp.ClientError):
                answer = None
            if isinstance(answer, dict) and answer.get("ok"):
                self.acked.add(uuid.UUID(temp_id).bytes)
                self.window.acked += 1
                return
            self.window.refused += 1
            await asyncio.sleep(RESEND_AFTER)

    async def send(self, *, rate: float, count: int, first: int = 0) -> None:
        """Send ``count`` messages at ``rate`` per second, open loop."""
        start = time.perf_counter()
        sent = 0
        while sent < count:
            due = min(count, int((time.perf_counter() - start) * rate) + 1)
            while sent < due:
                self._send(first + sent, str(uuid.uuid4()))
                self.window.sent += 1
                sent += 1
            await asyncio.sleep(TICK)

    def take_window(self) -> Window:
        window, self.window = self.window, Window()
        return window

    async def wait_delivered(self, *, within: float) -> int:
        """Wait until every acked message reached the dashboard; return how many did not."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and (
            self.delivered < len(self.acked) or self._background
        ):
            await asyncio.sleep(0.1)
        return max(0, len(self.acked) - self.delivered)

    async def missing_from_database(self, database_url: str) -> int:
        """Acked messages without a row: what the stack lost."""
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT temp_id FROM messages WHERE content LIKE $1", f"{self.tag} %"
            )
        finally:
            await conn.close()
        stored = {uuid.UUID(str(row["temp_id"])).bytes for row in rows}
        return len(self.acked - stored)

    async def close(self) -> None:
        if self._dashboard_keeper is not None:
            self._dashboard_keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dashboard_keeper
        for task in list(self._background):
            task.cancel()
        for client in [self._dashboard, *self.visitors]:
            if client is not None:
                await client.close()
        if self._session is not None:
            await self._session.close()

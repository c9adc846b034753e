"""Open-loop visitor traffic through the gateway, measured at the dashboard.

Visitors send ``sendMessage`` at a fixed total rate whatever the answers do; a
dashboard in the project room records when each ``newMessage`` arrives. Per
window it reports how many were sent, acked, delivered, and the latency from
the emit to the dashboard. It keeps only what is still pending and the acked
tempIds (16 bytes each), so a million messages fit in memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Any

import asyncpg
import socketio

RESEND_AFTER = 1.0  # seconds before a refused message is sent again with its tempId
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
    def __init__(self, *, url: str, project_id: int, token: str, visitors: int, tag: str) -> None:
        self.url = url
        self.project_id = project_id
        self.token = token
        self.tag = tag
        self.visitor_count = visitors
        self.visitors: list[socketio.AsyncClient] = []
        self.dashboard = socketio.AsyncClient(reconnection=True)
        self.emitted: dict[str, float] = {}
        self.acked: set[bytes] = set()
        self.delivered = 0
        self.window = Window()
        self.disconnects = 0
        self._background: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        self.dashboard.on("newMessage", self._on_new_message)
        self.dashboard.on("connect", self._join_room)
        self.dashboard.on("disconnect", self._on_disconnect)
        await self.dashboard.connect(self.url, auth={"token": self.token}, transports=["websocket"])
        for _ in range(self.visitor_count):
            self.visitors.append(await self._visitor(str(uuid.uuid4())))

    async def _join_room(self) -> None:
        await self.dashboard.emit("joinProjectRoom", {"projectId": self.project_id})

    def _on_disconnect(self, *_: Any) -> None:
        self.disconnects += 1

    async def _visitor(self, uid: str) -> socketio.AsyncClient:
        client = socketio.AsyncClient(reconnection=True)
        auth = {"projectId": self.project_id, "visitorUid": uid}

        async def identify() -> None:
            await client.emit("identify", auth)

        client.on("connect", identify)
        client.on("disconnect", self._on_disconnect)
        await client.connect(self.url, auth=auth, transports=["websocket"])
        await client.call("identify", auth, timeout=30)
        return client

    def _on_new_message(self, data: Any) -> None:
        temp_id = data.get("tempId") if isinstance(data, dict) else None
        emitted = self.emitted.pop(temp_id, None) if temp_id else None
        if emitted is not None:
            self.delivered += 1
            self.window.latencies_ms.append((time.perf_counter() - emitted) * 1000)

    def _send(self, index: int, temp_id: str) -> None:
        client = self.visitors[index % len(self.visitors)]
        self.emitted.setdefault(temp_id, time.perf_counter())

        async def acked(answer: Any = None) -> None:
            if isinstance(answer, dict) and answer.get("ok"):
                self.acked.add(uuid.UUID(temp_id).bytes)
                self.window.acked += 1
                return
            self.window.refused += 1
            await asyncio.sleep(RESEND_AFTER)
            self._send(index, temp_id)

        task = asyncio.create_task(
            client.emit(
                "sendMessage",
                {"content": f"{self.tag} {index}", "tempId": temp_id},
                callback=acked,
            )
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        while time.monotonic() < deadline and self.delivered < len(self.acked):
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
        for client in [self.dashboard, *self.visitors]:
            await client.disconnect()

"""The end-to-end load: visitors send, dashboards receive, every message is tallied.

Each visitor socket sends ``sendMessage`` (a fresh tempId each) and waits for the
broker-confirmed ack; each dashboard socket joins the project room and records
every ``newMessage``. A message is *delivered* once every dashboard received it;
its end-to-end latency is the time from the emit to the last dashboard's arrival.

Two modes:

- ``rate``: open loop, messages are emitted on a fixed schedule whatever the
  replies do (a slow server shows up as latency, not as a slower sender);
- ``max``: at most ``window`` messages in flight (emitted, not yet delivered to
  every dashboard); a new one goes out as soon as one is delivered, so the
  delivered rate is the pipeline's sustained maximum at that window.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Any

import aiohttp

from tests.bench.wire import SocketClient

DRAIN_TIMEOUT = 30.0  # seconds to wait for the last deliveries after sending stops
CONNECT_CONCURRENCY = 50  # sockets opened at once


@dataclasses.dataclass(kw_only=True)
class LoadOptions:
    visitors: int
    dashboards: int
    rate: float | None  # messages per second; None is max mode
    window: int
    duration: float
    size: int  # characters of content


@dataclasses.dataclass
class Sent:
    emitted: float
    acked: float | None = None
    ack_ok: bool | None = None
    arrivals: int = 0
    delivered: float | None = None


class Tally:
    """Every message of the measured run and what became of it."""

    def __init__(self, dashboards: int) -> None:
        self.dashboards = dashboards
        self.sent: dict[str, Sent] = {}
        self.seen: list[set[str]] = [set() for _ in range(dashboards)]
        self.duplicates = 0
        self.unexpected = 0
        self.last_delivery = 0.0
        self.delivered = 0
        self.slot_freed: asyncio.Event = asyncio.Event()
        self.in_flight = 0

    def on_dashboard(self, index: int) -> Any:
        seen = self.seen[index]

        def handle(event: str, payload: Any, at: float) -> None:
            if event != "newMessage":
                return
            temp_id = payload.get("tempId")
            entry = self.sent.get(temp_id)
            if entry is None:
                self.unexpected += 1  # warm-up or a stranger's message
                return
            if temp_id in seen:
                self.duplicates += 1
                return
            seen.add(temp_id)
            entry.arrivals += 1
            if entry.arrivals == self.dashboards:
                entry.delivered = at
                self.delivered += 1
                self.last_delivery = at
                self.release()

        return handle

    def release(self) -> None:
        self.in_flight -= 1
        self.slot_freed.set()


class Load:
    """Connects the sockets, runs the load, and reports the raw tallies."""

    def __init__(self, *, url: str, project_id: int, token: str, options: LoadOptions) -> None:
        self._url = url
        self._project_id = project_id
        self._token = token
        self._options = options
        self._session: aiohttp.ClientSession | None = None
        self.visitors: list[SocketClient] = []
        self.dashboards: list[SocketClient] = []
        self.tally = Tally(options.dashboards)
        self._content = ("x" * options.size) if options.size > 0 else "x"
        self._acks: set[asyncio.Task[None]] = set()
        self.started = 0.0
        self.stopped_sending = 0.0

    async def connect(self, urls: list[str]) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def visitor(index: int) -> SocketClient:
            async with limit:
                return await SocketClient.connect(
                    self._session_checked(),
                    urls[index % len(urls)],
                    {"projectId": self._project_id, "visitorUid": str(uuid.uuid4())},
                )

        for index in range(self._options.dashboards):
            # Dashboards sit on the last gateway, visitors spread over all of them.
            client = await SocketClient.connect(
                self._session_checked(),
                urls[-1 - index % len(urls)],
                {"token": self._token},
                self.tally.on_dashboard(index),
            )
            joined = await client.call("joinProjectRoom", {"projectId": self._project_id})
            if joined != {"status": "ok", "roomName": f"project:{self._project_id}"}:
                raise RuntimeError(f"joinProjectRoom answered {joined!r}")
            self.dashboards.append(client)
        self.visitors = list(
            await asyncio.gather(*(visitor(i) for i in range(self._options.visitors)))
        )

    def _session_checked(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    async def warm_up(self) -> None:
        """One message per visitor: creates the visitors and their conversations."""
        acks = await asyncio.gather(
            *(
                v.call("sendMessage", {"content": "warm-up", "tempId": str(uuid.uuid4())})
                for v in self.visitors
            )
        )
        refused = [a for a in acks if not (isinstance(a, dict) and a.get("ok"))]
        if refused:
            raise RuntimeError(f"warm-up refused: {refused[:3]!r}")
        # The warm-up's deliveries are not tallied; give them time to pass.
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while self.tally.unexpected < len(self.visitors) * len(self.dashboards):
            if time.monotonic() > deadline:
                raise TimeoutError("warm-up messages never reached the dashboards")
            await asyncio.sleep(0.05)

    async def _send(self, index: int) -> None:
        temp_id = str(uuid.uuid4())
        client = self.visitors[index % len(self.visitors)]
        entry = Sent(emitted=time.perf_counter())
        self.tally.sent[temp_id] = entry
        self.tally.in_flight += 1
        try:
            future = await client.emit("sendMessage", {"content": self._content, "tempId": temp_id})
        except Exception:
            entry.ack_ok = False
            self.tally.release()
            return
        task = asyncio.create_task(self._await_ack(future, entry))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _await_ack(self, future: asyncio.Future[Any], entry: Sent) -> None:
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT):
                ack = await future
        except Exception:
            ack = None
        entry.acked = time.perf_counter()
        entry.ack_ok = isinstance(ack, dict) and ack.get("ok") is True
        if not entry.ack_ok and entry.delivered is None:
            self.tally.release()

    async def run(self) -> None:
        options = self._options
        self.started = time.perf_counter()
        end = self.started + options.duration
        index = 0
        if options.rate is not None:
            while True:
                due = self.started + index / options.rate
                if due >= end:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._send(index)
                index += 1
        else:
            while time.perf_counter() < end:
                while self.tally.in_flight >= options.window:
                    self.tally.slot_freed.clear()
                    await self.tally.slot_freed.wait()
                await self._send(index)
                index += 1
        self.stopped_sending = time.perf_counter()
        await self.drain()

    async def drain(self) -> None:
        deadline = time.perf_counter() + DRAIN_TIMEOUT
        while time.perf_counter() < deadline:
            pending = [
                e for e in self.tally.sent.values() if e.delivered is None and e.ack_ok is not False
            ]
            if not pending:
                break
            await asyncio.sleep(0.02)
        if self._acks:
            await asyncio.wait(self._acks, timeout=DRAIN_TIMEOUT)

    async def close(self) -> None:
        await asyncio.gather(
            *(c.close() for c in [*self.dashboards, *self.visitors]), return_exceptions=True
        )
        if self._session is not None:
            await self._session.close()

    def result(self) -> dict[str, Any]:
        from tests.bench.stats import summary

        sent = self.tally.sent.values()
        acked = [e for e in sent if e.ack_ok]
        delivered = [e for e in sent if e.delivered is not None]
        lost = [e for e in acked if e.delivered is None]
        refused = [e for e in sent if e.ack_ok is False]
        span = (self.tally.last_delivery - self.started) if delivered else float("nan")
        return {
            "sent": len(self.tally.sent),
            "acked": len(acked),
            "refused": len(refused),
            "delivered": len(delivered),
            "lost": len(lost),
            "duplicated": self.tally.duplicates,
            "send_seconds": round(self.stopped_sending - self.started, 3),
            "delivered_per_s": round(len(delivered) / span, 1) if delivered else 0.0,
            "ack_ms": summary([(e.acked - e.emitted) * 1000 for e in acked if e.acked is not None]),
            "e2e_ms": summary(
                [(e.delivered - e.emitted) * 1000 for e in delivered if e.delivered is not None]
            ),
        }

"""``parley run`` (``make run``) as a user runs it: nothing it acked is lost.

The embedded broker keeps its log in memory. These tests run the real command
and prove the two things that protect what the gateway acknowledged: the broker
is recycled only once the worker stored everything, and Ctrl-C stores the
backlog before the broker goes (drain on stop). They also check that the
embedded PostgreSQL keeps its fsync defaults and that the state file a second
terminal reads exists exactly while the run does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import socketio

from parley.run_state import state_path
from tests import clients
from tests.embedded_bench.local_run import LocalRun

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

RECYCLE_TIMEOUT = 120.0  # seconds: the run looks at the broker's log every 30 s
FROZEN_FOR = 3.0  # seconds the worker stays frozen after Ctrl-C
RESENDS = 10  # a send refused during a recycle is sent again, as the widget does


class Widget:
    """One visitor that behaves like the widget: it reconnects and resends with the tempId."""

    def __init__(self, run: LocalRun) -> None:
        self.run = run
        self.uid = str(uuid.uuid4())
        self.tab: clients.Recorder | None = None

    async def _call(self, message: dict[str, str]) -> Any:
        if self.tab is None or not self.tab.client.connected:
            self.tab = await clients.visitor(self.run.url, self.run.project_id, self.uid)
        try:
            return await self.tab.call("sendMessage", message)
        except (socketio.exceptions.SocketIOError, TimeoutError) as exc:
            return {"ok": False, "error": {"code": "unavailable", "message": repr(exc)}}

    async def send(self, count: int, label: str) -> list[str]:
        """Send ``count`` messages; a refused or lost send goes again with its tempId."""
        temp_ids = []
        for index in range(count):
            temp_id = str(uuid.uuid4())
            message = {"content": f"{label} {index}", "tempId": temp_id}
            ack = await self._call(message)
            for _ in range(RESENDS):
                if ack.get("ok") or ack.get("error", {}).get("code") != "unavailable":
                    break
                await asyncio.sleep(1.0)
                ack = await self._call(message)
            assert ack == {"ok": True}, ack
            temp_ids.append(temp_id)
        return temp_ids

    async def close(self) -> None:
        if self.tab is not None and self.tab.client.connected:
            await self.tab.close()


async def stored(database_url: str, temp_ids: list[str]) -> set[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT temp_id::text FROM messages WHERE temp_id = ANY($1::uuid[])", temp_ids
        )
    finally:
        await conn.close()
    return {row["temp_id"] for row in rows}


async def wait_for(condition_name: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {condition_name}")


def stop_quietly(run: LocalRun) -> None:
    if run.process is not None and run.process.poll() is None:
        run.stop()


async def test_make_run_keeps_every_acked_message_through_recycles_and_ctrl_c(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "parley"
    run = LocalRun(
        data_dir=data_dir,
        extra_env={
            "PARLEY_BROKER_RECYCLE_RECORDS": "20",
            "PARLEY_LOG_LEVEL": "INFO",
            "PARLEY_RATE_LIMIT_COUNT": "1000",
        },
    )
    await asyncio.to_thread(run.start)
    acked: list[str] = []
    try:
        state = run.state()
        assert state is not None and state_path(data_dir).exists()
        conn = await asyncpg.connect(state.database_url)
        try:
            for name in ("fsync", "full_page_writes", "synchronous_commit"):
                assert await conn.fetchval(f"SHOW {name}") == "on", name
        finally:
            await conn.close()

        visitor = Widget(run)
        acked += await visitor.send(25, "before the recycle")
        first_broker = state.pids["broker"]

        def recycled() -> bool:
            current = run.state()
            return current is not None and current.pids.get("broker") not in (None, first_broker)

        await wait_for("the broker recycle", recycled, RECYCLE_TIMEOUT)
        acked += await visitor.send(10, "after the recycle")

        # Ctrl-C while the worker has a backlog: freeze it, send, stop, then let it go.
        worker = run.state().pids["worker"]  # type: ignore[union-attr]
        os.kill(worker, signal.SIGSTOP)
        try:
            acked += await visitor.send(15, "backlog at Ctrl-C")
            await visitor.close()
            assert run.process is not None
            run.process.send_signal(signal.SIGINT)
            await asyncio.sleep(FROZEN_FOR)
            assert run.process.poll() is None, "parley run stopped without storing the backlog"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGCONT)
        code = await asyncio.to_thread(run.process.wait, 120)
        assert code == 0, run.log_path.read_text()[-3000:]
        assert not state_path(data_dir).exists(), "a clean stop removes the state file"
    finally:
        await asyncio.to_thread(stop_quietly, run)

    again = LocalRun(data_dir=data_dir)
    await asyncio.to_thread(again.start)
    try:
        state = again.state()
        assert state is not None
        missing = set(acked) - await stored(state.database_url, acked)
        assert not missing, f"{len(missing)} of {len(acked)} acked messages were lost"
    finally:
        await asyncio.to_thread(stop_quietly, again)

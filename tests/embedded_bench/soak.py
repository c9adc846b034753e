"""The long run: N messages through ``parley run`` at a fixed rate, then a worker restart.

Prints one line per window (latency to the dashboard, broker CPU and memory,
broker restarts so far), then the figures at the start, at the end, and after the
worker restart, and finally whether every acked message has its row.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

from tests.bench.stack import LIFTED_LIMITS
from tests.embedded_bench.local_run import LocalRun, Sample, cpu_percent, total_cpu_percent
from tests.embedded_bench.traffic import Traffic, Window

DELIVERY_TIMEOUT = 180.0  # seconds for the backlog to reach the dashboard at the end
RESTART_WINDOWS = 2  # windows of traffic after the worker restart


def figures(label: str, window: Window, before: Sample, after: Sample, recycles: int) -> str:
    return (
        f"{label:<22} {window.describe()} | broker cpu {cpu_percent(before, after, 'broker'):.1f} %"
        f" rss {after.rss.get('broker', 0.0):.0f} MB | all processes cpu "
        f"{total_cpu_percent(before, after):.1f} % rss {sum(after.rss.values()):.0f} MB"
        f" | broker restarts {recycles}"
    )


class Soak:
    def __init__(self, *, run: LocalRun, traffic: Traffic, window: float) -> None:
        self.run = run
        self.traffic = traffic
        self.window = window
        self.lines: dict[str, str] = {}
        self.recycles = 0
        self._broker_pid = 0
        self._index = 0

    def _count_recycles(self, sample: Sample) -> None:
        pid = sample.pids.get("broker", 0)
        if self._broker_pid and pid and pid != self._broker_pid:
            self.recycles += 1
        self._broker_pid = pid or self._broker_pid

    async def report(self, label_for: dict[int, str]) -> None:
        before = self.run.sample()
        self._count_recycles(before)
        self.traffic.take_window()
        while True:
            await asyncio.sleep(self.window)
            after = self.run.sample()
            self._count_recycles(after)
            self._index += 1
            line = figures(
                f"window {self._index}", self.traffic.take_window(), before, after, self.recycles
            )
            print(time.strftime("%H:%M:%S"), line, flush=True)
            label = label_for.get(self._index)
            if label:
                self.lines[label] = line.replace(f"window {self._index}", label, 1)
            self.lines["end"] = line.replace(f"window {self._index}", "end", 1)
            before = after


async def soak(*, rate: float, count: int, visitors: int, window: float, data_dir: Path) -> int:
    run = LocalRun(data_dir=data_dir, extra_env=LIFTED_LIMITS)
    run.start()
    print(f"parley run up at {run.url} (data in {data_dir})", flush=True)
    traffic = Traffic(
        url=run.url,
        project_id=run.project_id,
        token=run.token,
        visitors=visitors,
        tag=f"soak-{uuid.uuid4().hex[:8]}",
    )
    exit_code = 1
    try:
        await traffic.connect()
        soak = Soak(run=run, traffic=traffic, window=window)
        # Window 1 includes the warm-up (new conversations, JIT-less caches): start = window 2.
        reporter = asyncio.create_task(soak.report({2: "start"}))
        print(f"sending {count} messages at {rate:.0f}/s from {visitors} visitors", flush=True)
        await traffic.send(rate=rate, count=count)
        end_line = soak.lines.get("end", "")
        worker = run.pids().get("worker")
        print(f"restarting the worker (pid {worker})", flush=True)
        if worker:
            os.kill(worker, signal.SIGTERM)
        await traffic.send(rate=rate, count=int(rate * window * RESTART_WINDOWS), first=count)
        after_restart = soak.lines.get("end", "")
        reporter.cancel()
        undelivered = await traffic.wait_delivered(within=DELIVERY_TIMEOUT)
        state = run.state()
        assert state is not None
        missing = await traffic.missing_from_database(state.database_url)
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while missing and time.monotonic() < deadline:
            # The worker may still be storing the backlog.
            await asyncio.sleep(10)
            missing = await traffic.missing_from_database(state.database_url)
        print()
        print(soak.lines.get("start", "start: run too short"))
        print(end_line.replace("end", "end", 1))
        print(after_restart.replace("end", "after worker restart", 1))
        print(
            f"acked {len(traffic.acked)}, not on the dashboard {undelivered}, "
            f"acked but not stored {missing}, client disconnects {traffic.disconnects}, "
            f"resyncs {traffic.resyncs}, "
            f"broker restarts {soak.recycles}",
            flush=True,
        )
        exit_code = 0 if missing == 0 else 1
    finally:
        await traffic.close()
        code = run.stop()
        print(f"parley run stopped with exit code {code}", flush=True)
    return exit_code

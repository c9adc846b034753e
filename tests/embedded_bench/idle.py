"""Idle cost of ``parley run``: CPU and resident memory of every process, doing nothing.

Sends a few messages first so every path is warm, lets it settle, measures for a
while, then times the first message after the quiet spell and a few after it
(the fetch wait switches from its idle to its busy value).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from tests.embedded_bench.local_run import LocalRun, cpu_percent, total_cpu_percent
from tests.embedded_bench.traffic import Traffic, percentile

WARM_MESSAGES = 20
SETTLE = 15.0  # seconds after the warm-up before measuring
FOLLOW_UP = 10  # messages after the first one, one a second
DELIVERY_TIMEOUT = 10.0  # seconds


async def delivered(traffic: Traffic, count: int) -> list[float]:
    """The latencies of the next ``count`` deliveries (fewer if they take over 10 s)."""
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while len(traffic.window.latencies_ms) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return traffic.take_window().latencies_ms


async def idle(*, seconds: float, data_dir: Path) -> None:
    run = LocalRun(data_dir=data_dir)
    run.start()
    traffic = Traffic(
        url=run.url,
        project_id=run.project_id,
        token=run.token,
        visitors=1,
        tag=f"idle-{uuid.uuid4().hex[:8]}",
    )
    try:
        await traffic.connect()
        await traffic.send(rate=10, count=WARM_MESSAGES)
        await traffic.wait_delivered(within=30)
        await asyncio.sleep(SETTLE)
        before = run.sample()
        await asyncio.sleep(seconds)
        after = run.sample()
        print(f"idle for {seconds:.0f} s, CPU % of one core and resident memory:")
        for name in sorted(after.cpu):
            print(
                f"  {name:<14} cpu {cpu_percent(before, after, name):5.2f} %"
                f"  rss {after.rss[name]:6.1f} MB"
            )
        print(
            f"  {'total':<14} cpu {total_cpu_percent(before, after):5.2f} %"
            f"  rss {sum(after.rss.values()):6.1f} MB"
        )
        traffic.take_window()
        await traffic.send(rate=1000, count=1, first=WARM_MESSAGES)
        first = await delivered(traffic, 1)
        await traffic.send(rate=1, count=FOLLOW_UP, first=WARM_MESSAGES + 1)
        rest = await delivered(traffic, FOLLOW_UP)
        print(
            f"first message after the idle spell: {first[0] if first else float('nan'):.1f} ms"
            f" to the dashboard; the next {len(rest)} at 1/s: p50 {percentile(rest, 0.5):.1f} ms"
            f" max {max(rest, default=float('nan')):.1f} ms"
        )
    finally:
        await traffic.close()
        started = time.monotonic()
        code = run.stop()
        print(f"stopped with exit code {code} in {time.monotonic() - started:.1f} s")

"""End-to-end latency benchmark: ``make bench`` (``python -m tests.bench``).

Runs the real processes (two gateways, the Faust worker, the outbox relay) on the
same services as the tests, sends visitor messages at a fixed rate from several
visitors (open loop: a slow reply does not slow the sender), and measures, per
message, the time from the visitor's ``sendMessage`` emit to the broker-confirmed
ack and to the dashboard's ``newMessage``. Prints percentiles and each process's
resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from gateway.tokens import TokenSigner
from parley.settings import Secret, Settings
from persistence.database import create_engine
from persistence.directory import Directory
from tests import clients
from tests.servers import Cluster, create_topics
from tests.services import ServiceSet

DEFAULT_RATE = 100.0  # messages per second, all visitors together
DEFAULT_DURATION = 30.0  # seconds of sending
DEFAULT_VISITORS = 10


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def describe(name: str, values_ms: list[float]) -> str:
    return (
        f"{name:<26} n={len(values_ms):<5} p50={percentile(values_ms, 0.50):7.1f} ms  "
        f"p95={percentile(values_ms, 0.95):7.1f} ms  p99={percentile(values_ms, 0.99):7.1f} ms  "
        f"max={max(values_ms):7.1f} ms  mean={statistics.fmean(values_ms):7.1f} ms"
    )


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def run(rate: float, duration: float, visitors: int, workdir: Path) -> None:
    services = ServiceSet.start(
        Settings.from_env({**os.environ, "PARLEY_SECRET": "x" * 32}), workdir
    )
    cluster: Cluster | None = None
    try:
        await asyncio.to_thread(services.create_template)
        database = await services.clone_template()
        settings = Settings(
            database_url=services.database_url(database),
            redis_url=services.redis_url,
            kafka_bootstrap_servers=services.bootstrap_servers,
            secret=Secret(uuid.uuid4().hex),
            data_dir=workdir,
            topic_prefix=f"bench{uuid.uuid4().hex[:6]}.",
            events_channel=f"parley:bench:{uuid.uuid4().hex[:6]}",
            worker_id=f"bench-{uuid.uuid4().hex[:6]}",
            topic_partitions=8,
            fetch_wait_ms=services.fetch_wait_ms,
            rate_limit_count=1_000_000,
            # Every bench client comes from loopback: lift the per-address and per-socket limits.
            connect_burst=1_000_000,
            max_sockets_per_address=1_000_000,
            new_visitor_limit=1_000_000,
            socket_event_burst=1_000_000.0,
        )
        await create_topics(settings)
        engine = create_engine(services.database_url(database), pool_size=1)
        directory = Directory(engine=engine)
        project = await directory.create_project(name="bench")
        agent = await directory.add_agent(project_id=project.id, email="bench@parley.test")
        await engine.dispose()
        token = TokenSigner(secret=settings.secret, ttl=3600).issue(agent.id)

        cluster = Cluster(settings, workdir)
        gateways = await cluster.start_path("gateway-a", "gateway-b")
        dash = await clients.dashboard(gateways[1], token, project.id)
        tabs = [
            await clients.visitor(gateways[i % 2], project.id, str(uuid.uuid4()))
            for i in range(visitors)
        ]
        # Warm-up: the first message of each visitor creates its conversation.
        for tab in tabs:
            await tab.call("sendMessage", {"content": "warm-up", "tempId": str(uuid.uuid4())})
        await dash.wait_for("newMessage", visitors)
        warmup = len(dash.payloads("newMessage"))

        emitted: dict[str, float] = {}
        acked: dict[str, float] = {}
        wall: dict[str, float] = {}
        total = int(rate * duration)

        async def send_one(index: int, start: float) -> None:
            await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
            temp_id = str(uuid.uuid4())
            emitted[temp_id] = time.perf_counter()
            wall[temp_id] = time.time()
            ack = await tabs[index % visitors].call(
                "sendMessage", {"content": f"bench {index}", "tempId": temp_id}
            )
            if ack.get("ok"):
                acked[temp_id] = time.perf_counter()

        print(f"sending {total} messages at {rate:.0f}/s from {visitors} visitors ...", flush=True)
        start = time.perf_counter()
        await asyncio.gather(*(send_one(i, start) for i in range(total)))
        await dash.wait_for("newMessage", warmup + total, timeout=60)
        arrivals = {data["tempId"]: at for at, data in dash.received["newMessage"][warmup:]}
        stored_at = {
            data["tempId"]: datetime.datetime.fromisoformat(data["createdAt"]).timestamp()
            for _, data in dash.received["newMessage"][warmup:]
        }
        ack_ms = [(acked[t] - emitted[t]) * 1000 for t in acked]
        e2e_ms = [(arrivals[t] - emitted[t]) * 1000 for t in arrivals if t in emitted]
        store_ms = [(stored_at[t] - wall[t]) * 1000 for t in stored_at if t in wall]
        print()
        print(describe("emit -> ack (broker)", ack_ms))
        print(describe("emit -> stored (commit)", store_ms))
        print(describe("emit -> dashboard", e2e_ms))
        print(f"delivered {len(e2e_ms)}/{total}, acked {len(ack_ms)}/{total}")
        print(
            "resident memory: "
            + ", ".join(
                f"{child.name} {rss_mb(child.process.pid if child.process else 0):.0f} MB"
                for child in cluster.children
            )
        )
        for recorder in [dash, *tabs]:
            await recorder.close()
    finally:
        if cluster is not None:
            cluster.stop()
        await asyncio.to_thread(services.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE)
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION)
    parser.add_argument("--visitors", type=int, default=DEFAULT_VISITORS)
    parser.add_argument("--workdir", type=Path, help="keep services' data and logs here")
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        asyncio.run(run(args.rate, args.duration, args.visitors, args.workdir.resolve()))
        return
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as workdir:
        asyncio.run(run(args.rate, args.duration, args.visitors, Path(workdir)))


if __name__ == "__main__":
    main()

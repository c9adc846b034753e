"""``make bench``: the whole message path under load (``python -m tests.bench --help``).

Starts the embedded services and Parley's real processes (gateways, the Faust
worker, the outbox relay), connects visitor and dashboard sockets, and sends
visitor messages either at a fixed rate or as fast as a bounded in-flight window
allows. Prints sent, acked, delivered to every dashboard, lost and duplicated;
ack and end-to-end percentiles; the delivered rate; each process's CPU per
delivered message and peak memory. ``--json`` writes the same as JSON.

Examples::

    python -m tests.bench --rate 50 --visitors 50 --dashboards 2 --duration 60
    python -m tests.bench --max --window 200 --visitors 200 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import tempfile
from pathlib import Path
from typing import Any

from tests.bench.load import Load, LoadOptions
from tests.bench.procs import format_report
from tests.bench.stack import bench_stack
from tests.bench.stats import describe, write_json

DEFAULT_RATE = 50.0  # messages per second, all visitors together
DEFAULT_DURATION = 30.0  # seconds of sending
DEFAULT_VISITORS = 50
DEFAULT_DASHBOARDS = 2
DEFAULT_WINDOW = 50  # messages in flight in max mode
DEFAULT_SIZE = 40  # characters per message


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    options = LoadOptions(
        visitors=args.visitors,
        dashboards=args.dashboards,
        rate=None if args.max else args.rate,
        window=args.window,
        duration=args.duration,
        size=args.size,
    )
    async with bench_stack(workdir, durable=args.durable) as stack:
        await stack.cluster.worker()
        await stack.cluster.relay()
        urls = [await stack.cluster.gateway(f"gateway-{i + 1}") for i in range(args.gateways)]
        load = Load(url=urls[0], project_id=stack.project_id, token=stack.token, options=options)
        try:
            await load.connect(urls)
            await load.warm_up()
            watch = stack.watch()
            watch.mark()
            watch.start_sampling()
            if options.rate is None:
                mode = f"max, window {options.window}"
            else:
                mode = f"{options.rate:g} msg/s"
            print(
                f"sending for {options.duration:g} s ({mode}) from {options.visitors} visitors "
                f"to {options.dashboards} dashboards through {len(urls)} gateway(s) ...",
                flush=True,
            )
            await load.run()
            await watch.stop_sampling()
            result = load.result()
            result["processes"] = watch.report(result["delivered"])
        finally:
            await load.close()
    result["options"] = {**vars(args), "workdir": str(args.workdir) if args.workdir else None}
    result["at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result["loadavg"] = os.getloadavg()
    return result


def print_result(result: dict[str, Any]) -> None:
    print()
    print(
        f"sent {result['sent']}  acked {result['acked']}  refused {result['refused']}  "
        f"delivered to every dashboard {result['delivered']}  lost {result['lost']}  "
        f"duplicated {result['duplicated']}"
    )
    print(describe("emit -> ack", result["ack_ms"]))
    print(describe("emit -> every dashboard", result["e2e_ms"]))
    print(f"delivered {result['delivered_per_s']:.1f} msg/s")
    print(format_report(result["processes"]))
    load1, load5, _ = result["loadavg"]
    print(f"load average at the end: {load1:.2f} (1 min), {load5:.2f} (5 min)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="messages/s, all visitors")
    parser.add_argument("--max", action="store_true", help="as fast as the window allows")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="in flight (--max)")
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION, help="seconds")
    parser.add_argument("--visitors", type=int, default=DEFAULT_VISITORS)
    parser.add_argument("--dashboards", type=int, default=DEFAULT_DASHBOARDS)
    parser.add_argument("--gateways", type=int, default=1)
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="characters per message")
    parser.add_argument(
        "--durable",
        action="store_true",
        help="embedded PostgreSQL with fsync on, as `make run` keeps it (default: off)",
    )
    parser.add_argument("--json", type=Path, help="write the result here as JSON")
    parser.add_argument("--workdir", type=Path, help="keep services' data and logs here")
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run(args, args.workdir.resolve()))
    else:
        with tempfile.TemporaryDirectory(prefix="parley-bench-") as workdir:
            result = asyncio.run(run(args, Path(workdir)))
    print_result(result)
    write_json(args.json, result)


if __name__ == "__main__":
    main()

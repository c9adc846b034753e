"""``python -m tests.faults [--rate 50] [--duration 20] [--scenarios a,b] [--json out.json]``.

Exits 1 when a scenario loses or duplicates a message (the memory-only broker
restart may lose; it is counted, not failed) or breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from tests.faults import report
from tests.faults.runner import Options, run_suite
from tests.faults.scenarios import BY_NAME, SCENARIOS
from tests.faults.tally import ScenarioResult

DEFAULT_RATE = 50.0  # messages per second; 300 is the heavy run
DEFAULT_DURATION = 20.0  # seconds of load per scenario
DEFAULT_FAULT_AT = 5.0  # seconds into the load
DEFAULT_DRAIN = 15.0  # seconds without progress before the drain gives up
MAX_DURATION = 300.0  # seconds: the suite stops by itself
MAX_RATE = 2_000.0  # messages per second, to loopback only


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="messages per second")
    parser.add_argument(
        "--visitors", type=int, help="widgets sending (default: one per msg/s of rate)"
    )
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION, help="seconds of load")
    parser.add_argument(
        "--fault-at", type=float, default=DEFAULT_FAULT_AT, help="seconds into the load"
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=DEFAULT_DRAIN,
        help="after the load, give up once nothing was stored or shown for this long (s)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(s.name for s in SCENARIOS),
        help="comma-separated, from: " + ", ".join(BY_NAME),
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table too")
    parser.add_argument("--workdir", type=Path, help="keep the services' data and logs here")
    args = parser.parse_args(argv)
    unknown = [n for n in args.scenarios.split(",") if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {list(BY_NAME)}")
    if not 0 < args.rate <= MAX_RATE or not 0 < args.duration <= MAX_DURATION:
        parser.error(f"rate must be in (0, {MAX_RATE}], duration in (0, {MAX_DURATION}]")
    if not 0 <= args.fault_at < args.duration:
        parser.error("--fault-at must fall inside the load")
    return args


def run(work: Coroutine[Any, Any, list[ScenarioResult]]) -> list[ScenarioResult]:
    """Run on uvloop where it is installed (uvicorn's extra): the clients need the CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    return uvloop.run(work)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # A dropped socket is logged by Engine.IO as an error; the report counts reconnects.
    for chatty in ("engineio.client", "socketio.client"):
        logging.getLogger(chatty).setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="parley-faults-") as scratch:
        workdir = (args.workdir or Path(scratch)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        options = Options(
            rate=args.rate,
            visitors=args.visitors or max(1, round(args.rate)),
            duration=args.duration,
            fault_at=args.fault_at,
            drain=args.drain,
            scenarios=[BY_NAME[name] for name in args.scenarios.split(",")],
            workdir=workdir,
        )
        print(
            f"fault suite: {options.rate:.0f} msg/s from {options.visitors} visitors for "
            f"{options.duration:.0f} s per scenario, fault at {options.fault_at:.0f} s, "
            f"2 gateways, 2 dashboards; fresh services in {workdir}",
            flush=True,
        )
        print(report.header(), flush=True)

        def show(result: ScenarioResult) -> None:
            print(report.line(result), flush=True)
            for detail in report.details(result):
                print(detail, flush=True)

        began = time.monotonic()
        results = run(run_suite(options, on_result=show))
        elapsed = time.monotonic() - began
    print(f"\n{report.LEGEND}\n{len(results)} scenarios in {elapsed:.0f} s")
    if args.markdown:
        print("\n" + report.markdown(results))
    if args.json:
        settings = {k: v for k, v in dataclasses.asdict(options).items() if k != "scenarios"}
        settings["scenarios"] = [s.name for s in options.scenarios]
        settings["workdir"] = str(options.workdir)
        settings["elapsed_s"] = round(elapsed)
        report.write_json(args.json, settings, results)
    failed = [r.name for r in results if r.failed]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

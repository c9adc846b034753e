"""``python -m tests.embedded_bench soak|idle|broker``: the embedded stack's benchmarks.

- ``soak``: N messages through ``parley run`` at a fixed rate, figures at the
  start and the end, then a worker restart (``make bench-soak``).
- ``idle``: CPU and memory of an idle ``parley run`` (``make bench-idle``).
- ``broker``: the embedded broker candidates measured directly (``make bench-broker``).

Figures measured while other work loads the machine are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from tests.embedded_bench.idle import idle
from tests.embedded_bench.soak import soak


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.embedded_bench", description=__doc__)
    parser.add_argument("--data-dir", type=Path, help="keep parley run's data here")
    sub = parser.add_subparsers(dest="command", required=True)
    soak_args = sub.add_parser("soak", help="the long run")
    soak_args.add_argument("--rate", type=float, default=200.0, help="messages per second")
    soak_args.add_argument("--count", type=int, default=1_000_000)
    soak_args.add_argument("--visitors", type=int, default=100)
    soak_args.add_argument("--window", type=float, default=60.0, help="seconds per report line")
    idle_args = sub.add_parser("idle", help="idle CPU and memory")
    idle_args.add_argument("--seconds", type=float, default=60.0)
    broker_args = sub.add_parser("broker", help="the broker candidates")
    broker_args.add_argument("--quick", action="store_true", help="smaller logs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="parley-embedded-bench-") as scratch:
        data_dir = (args.data_dir or Path(scratch)).resolve()
        if args.command == "soak":
            return asyncio.run(
                soak(
                    rate=args.rate,
                    count=args.count,
                    visitors=args.visitors,
                    window=args.window,
                    data_dir=data_dir,
                )
            )
        if args.command == "idle":
            asyncio.run(idle(seconds=args.seconds, data_dir=data_dir))
            return 0
        from tests.embedded_bench.broker import candidates

        asyncio.run(candidates(workdir=data_dir, quick=args.quick))
        return 0


if __name__ == "__main__":
    sys.exit(main())

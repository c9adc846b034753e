"""A dashboard in a process of its own, so the load's hundreds of widgets cannot delay it.

The dashboards are the suite's instruments: when they share an event loop with
300 widgets on a busy machine, their arrival times measure the load generator, and
a stalled loop misses the gateway's pings and gets disconnected. Each one runs
here instead (``python -m tests.faults.observer``), driven over stdin/stdout, one
JSON object per line:

- it prints ``{"ready": true}`` once it joined and finished its first sync;
- ``away <seconds>`` closes its connection for that long, then it rejoins and syncs;
- ``state`` prints what it showed: ``{"shown": {id: [tempId, firstSeen]}, ...}``;
- ``close`` closes it and ends the process.

Arrival times are ``time.monotonic()``, one clock for every process on Linux.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from tests.faults.dashboard import Dashboard
from tests.faults.session import contiguous

READY_TIMEOUT = 90.0  # seconds for a dashboard to connect, join and sync on a busy machine
ANSWER_TIMEOUT = 60.0  # seconds for any other command (``away`` included)
LINE_LIMIT = 2**26  # bytes: a state line lists every message shown


def state(dash: Dashboard) -> dict[str, Any]:
    return {
        "shown": {
            str(i): [message["tempId"], dash.first_seen[i]] for i, message in dash.shown.items()
        },
        "repeats": dash.repeats,
        "syncs": dash.syncs,
        "pages": dash.pages,
        "resyncs": dash.resyncs,
        "reconnects": dash.reconnects,
        "errors": dict(dash.errors),
        # Conversations whose highest seq shown lies past a missing one: a gap the
        # dashboard could see, that no catch-up has filled.
        "gapped": sum(1 for seqs in dash.seqs.values() if seqs and max(seqs) > contiguous(seqs)),
    }


async def serve(args: argparse.Namespace) -> None:
    dash = Dashboard(name=args.name, project_id=args.project, token=args.token, urls=args.url)
    loop = asyncio.get_running_loop()

    def say(body: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(body, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    await dash.open()
    while dash.cursor is None:
        await asyncio.sleep(0.05)
    say({"ready": True})
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        command, _, argument = line.strip().partition(" ")
        if command == "away":
            await dash.away(float(argument))
            say({"ok": True})
        elif command == "state":
            say(state(dash))
        else:  # "close", or stdin closed: the runner is gone
            await dash.close()
            say({"ok": True})
            return


class ObservedDashboard:
    """The runner's handle on one observer process; :meth:`refresh` reads its state."""

    def __init__(
        self, *, name: str, project_id: int, token: str, urls: list[str], log: Path
    ) -> None:
        self.name = name
        self._args = [
            "--name", name, "--project", str(project_id), "--token", token,
            *(item for url in urls for item in ("--url", url)),
        ]  # fmt: skip
        self._log = log
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self.shown: dict[int, dict[str, Any]] = {}
        self.first_seen: dict[int, float] = {}
        self.repeats = self.syncs = self.pages = self.resyncs = self.reconnects = 0
        self.gapped = 0
        self.errors: dict[str, int] = {}

    async def open(self) -> None:
        with self._log.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.faults.observer",
                *self._args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=LINE_LIMIT,
            )
        answer = await self._read(READY_TIMEOUT)
        if not answer.get("ready"):
            raise RuntimeError(f"{self.name} did not start: {answer}")

    async def away(self, seconds: float) -> None:
        await self._ask(f"away {seconds}")

    async def refresh(self) -> None:
        body = await self._ask("state")
        self.shown = {int(i): {"tempId": t} for i, (t, _) in body["shown"].items()}
        self.first_seen = {int(i): seen for i, (_, seen) in body["shown"].items()}
        for field in ("repeats", "syncs", "pages", "resyncs", "reconnects", "errors", "gapped"):
            setattr(self, field, body[field])

    async def close(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        try:
            await self._ask("close")
            await asyncio.wait_for(process.wait(), ANSWER_TIMEOUT)
        except (TimeoutError, RuntimeError, OSError):
            process.kill()
            await process.wait()

    async def _ask(self, command: str) -> dict[str, Any]:
        async with self._lock:
            assert self._process is not None and self._process.stdin is not None
            self._process.stdin.write(command.encode() + b"\n")
            await self._process.stdin.drain()
            return await self._read(ANSWER_TIMEOUT)

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self._process is not None and self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.name} exited (log: {self._log})")
        answer: dict[str, Any] = json.loads(line)
        return answer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.observer")
    parser.add_argument("--name", required=True)
    parser.add_argument("--project", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--url", action="append", required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))


if __name__ == "__main__":
    main()

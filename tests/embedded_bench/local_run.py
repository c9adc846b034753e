"""``parley run`` as a user starts it, in its own data folder, plus CPU and memory readings.

The benchmark reads the state file ``parley run`` writes (:mod:`parley.run_state`)
for the services' URLs and the processes' pids, so it measures exactly what
``make run`` runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from parley.embedded import free_port
from parley.run_state import RunState

START_TIMEOUT = 120.0  # seconds for `parley run` to print its banner
STOP_TIMEOUT = 180.0  # seconds for a drained stop
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@dataclasses.dataclass
class Sample:
    """CPU seconds and resident memory of each named process at one moment."""

    at: float
    pids: dict[str, int]
    cpu: dict[str, float]
    rss: dict[str, float]


class LocalRun:
    """One ``parley run`` child process and its state file."""

    def __init__(self, *, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_", "REDIS_", "KAFKA_"))
        }
        self.env.update(
            PARLEY_DATA_DIR=str(data_dir), PARLEY_PORT=str(self.port), PARLEY_LOG_LEVEL="WARNING"
        )
        self.env.update(extra_env or {})
        self.process: subprocess.Popen[str] | None = None
        self.project_id = 0
        self.token = ""
        self.log_path = data_dir / "parley-run.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "parley.cli", "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            token = re.search(r"Dashboard token:\s+(\S+)", text)
            project = re.search(r"Demo project id:\s+(\d+)", text)
            if token and project and self.state() is not None and self._gateway_listens():
                self.token, self.project_id = token.group(1), int(project.group(1))
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"parley run exited: see {self.log_path}")
            time.sleep(0.2)
        raise RuntimeError(f"parley run did not start within {START_TIMEOUT:.0f} s")

    def _gateway_listens(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
            return True
        return False

    def state(self) -> RunState | None:
        return RunState.read(self.data_dir)

    def pids(self) -> dict[str, int]:
        state = self.state()
        if state is None:
            return {}
        pids = {"parley run": state.pid, **state.pids}
        postgres = pids.get("postgres")
        if postgres:
            for number, child in enumerate(children_of(postgres)):
                pids[f"postgres/{number}"] = child
        return pids

    def sample(self) -> Sample:
        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        pids = self.pids()
        for name, pid in pids.items():
            seconds = cpu_seconds(pid)
            if seconds is not None:
                cpu[name] = seconds
                rss[name] = rss_mb(pid)
        return Sample(at=time.monotonic(), pids=pids, cpu=cpu, rss=rss)

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Stop as Ctrl-C does; return the exit code."""
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"parley run did not stop within {STOP_TIMEOUT:.0f} s") from None


def cpu_percent(before: Sample, after: Sample, name: str) -> float:
    """CPU % of one core between two samples; a restarted process counts from its start."""
    end = after.cpu.get(name)
    if end is None:
        return 0.0
    same_process = before.pids.get(name) == after.pids.get(name)
    used = end - before.cpu.get(name, 0.0) if same_process else end
    return 100 * used / max(after.at - before.at, 1e-9)


def total_cpu_percent(before: Sample, after: Sample) -> float:
    return sum(cpu_percent(before, after, name) for name in after.cpu)

"""CPU time and memory of the processes under test, read from /proc.

A process is watched with its descendants (PostgreSQL serves each connection from
a child of the postmaster). CPU is user + system time: the live processes' own,
plus what the root's reaped children spent (``cutime``/``cstime``), so a backend
that exits during a run still counts. Memory is sampled while the load runs:
a single process reports its peak resident set (``VmHWM``, kept by the kernel);
a tree reports the peak of its summed proportional set size (``Pss``), which
counts shared memory (PostgreSQL's buffers) once rather than once per backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")  # clock ticks per second in /proc/<pid>/stat
SAMPLE_INTERVAL = 0.5  # seconds between memory samples


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; everything after its ')' is split.
    return raw[raw.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue.extend(_children(current))
    return tree


def _status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _pss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return _status_kb(pid, "VmRSS:")


@dataclasses.dataclass
class Watched:
    """One named process (with its tree); CPU is measured between two marks."""

    name: str
    pid: int
    tree: bool = False
    peak_kb: int = 0
    _mark: float = 0.0

    def cpu_seconds(self) -> float:
        """CPU spent so far by the process, its live descendants and its reaped children."""
        total = 0
        try:
            fields = _stat_fields(self.pid)
        except OSError:
            return float("nan")
        # utime, stime, cutime, cstime are fields 14-17 (1-based), 11-14 after the name.
        total += sum(int(v) for v in fields[11:15])
        if self.tree:
            for pid in descendants(self.pid)[1:]:
                with contextlib.suppress(OSError, ValueError):
                    total += sum(int(v) for v in _stat_fields(pid)[11:13])
        return total / TICKS

    def mark(self) -> None:
        self._mark = self.cpu_seconds()
        self.peak_kb = 0

    def since_mark(self) -> float:
        return self.cpu_seconds() - self._mark

    def sample(self) -> None:
        if self.tree:
            current = sum(_pss_kb(pid) for pid in descendants(self.pid))
        else:
            current = max(_status_kb(self.pid, "VmHWM:"), _status_kb(self.pid, "VmRSS:"))
        self.peak_kb = max(self.peak_kb, current)

    def resident_mb(self) -> float:
        """Resident now: Pss of the tree, or the process's RSS."""
        if self.tree:
            return sum(_pss_kb(pid) for pid in descendants(self.pid)) / 1024
        return _status_kb(self.pid, "VmRSS:") / 1024


class ProcessWatch:
    """Watches named processes: CPU between :meth:`mark` and :meth:`report`, peak memory."""

    def __init__(self, watched: list[Watched]) -> None:
        self.watched = watched
        self._sampler: asyncio.Task[None] | None = None

    def mark(self) -> None:
        for item in self.watched:
            item.mark()
            item.sample()

    async def _sample_forever(self) -> None:
        while True:
            for item in self.watched:
                item.sample()
            await asyncio.sleep(SAMPLE_INTERVAL)

    def start_sampling(self) -> None:
        self._sampler = asyncio.create_task(self._sample_forever(), name="bench-memory-sampler")

    async def stop_sampling(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        for item in self.watched:
            item.sample()

    def report(self, messages: int) -> dict[str, dict[str, float]]:
        """Per process: CPU seconds since the mark, ms per message, peak resident MB."""
        report: dict[str, dict[str, float]] = {}
        for item in self.watched:
            cpu = item.since_mark()
            report[item.name] = {
                "cpu_s": round(cpu, 3),
                "cpu_ms_per_msg": round(cpu * 1000 / messages, 4) if messages else float("nan"),
                "peak_rss_mb": round(item.peak_kb / 1024, 1),
            }
        servers = [v for k, v in report.items() if k != "client"]
        total = sum(v["cpu_s"] for v in servers)
        report["servers total"] = {
            "cpu_s": round(total, 3),
            "cpu_ms_per_msg": round(total * 1000 / messages, 4) if messages else float("nan"),
            "peak_rss_mb": round(sum(v["peak_rss_mb"] for v in servers), 1),
        }
        return report


def format_report(report: dict[str, dict[str, float]]) -> str:
    lines = [f"{'process':<16} {'CPU s':>8} {'CPU ms/msg':>11} {'peak RSS MB':>12}"]
    for name, row in report.items():
        lines.append(
            f"{name:<16} {row['cpu_s']:>8.2f} {row['cpu_ms_per_msg']:>11.3f} "
            f"{row['peak_rss_mb']:>12.1f}"
        )
    return "\n".join(lines)

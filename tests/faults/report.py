"""The suite's output: one line per scenario as it finishes, a table at the end, JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.faults.tally import ScenarioResult

COLUMNS = [
    ("scenario", 18),
    ("sent", 6),
    ("acked", 6),
    ("stored", 6),
    ("delivered", 11),
    ("lost", 5),
    ("missed", 11),
    ("dup", 4),
    ("max ms", 7),
    ("result", 6),
]


def verdict(result: ScenarioResult) -> str:
    if result.skipped:
        return "skip"
    if result.error:
        return "ERROR"
    if result.failed:
        return "FAIL"
    if result.may_lose and result.lost:
        return "lossy"
    return "ok"


def cells(result: ScenarioResult) -> list[str]:
    if result.skipped:
        return [result.name, *[""] * (len(COLUMNS) - 2), "skip"]
    return [
        result.name,
        str(result.sent),
        str(result.acked),
        str(result.stored),
        "/".join(str(n) for n in result.delivered) or "-",
        str(result.lost),
        f"{result.missed_dashboards}d/{result.missed_widgets}w",
        str(result.duplicated),
        f"{result.max_latency_ms:.0f}",
        verdict(result),
    ]


def header() -> str:
    return "  ".join(name.rjust(width) for name, width in COLUMNS)


def line(result: ScenarioResult) -> str:
    pairs = zip(cells(result), COLUMNS, strict=True)
    return "  ".join(cell.rjust(width) for cell, (_, width) in pairs)


def details(result: ScenarioResult) -> list[str]:
    out = [f"    {note}" for note in result.notes]
    if result.achieved_rate:
        out.insert(
            0,
            f"    achieved {result.achieved_rate:.0f} msg/s, "
            f"p99 latency {result.p99_latency_ms:.0f} ms, repeats {result.repeats}",
        )
    if result.skipped:
        out.insert(0, f"    skipped: {result.skipped}")
    if result.error:
        out.insert(0, f"    error: {result.error}")
    out[:0] = [f"    violated: {violation}" for violation in result.violations]
    return out


def markdown(results: list[ScenarioResult]) -> str:
    names = [name for name, _ in COLUMNS]
    rows = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    rows.extend("| " + " | ".join(cells(result)) + " |" for result in results)
    return "\n".join(rows)


LEGEND = (
    "delivered: messages shown per dashboard; lost: acked, never stored; missed: stored, "
    "never shown on a dashboard (d, summed over dashboards) or never confirmed to its "
    "widget (w); dup: one tempId under two ids; max ms: emit -> first shown on a dashboard"
)


def write_json(path: Path, options: dict[str, Any], results: list[ScenarioResult]) -> None:
    body = {"options": options, "results": [result.as_json() for result in results]}
    path.write_text(json.dumps(body, indent=2) + "\n")

"""Percentiles and the printed form of the benchmark's results."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {
        "n": len(ordered),
        "p50": round(percentile(ordered, 0.50), 2),
        "p95": round(percentile(ordered, 0.95), 2),
        "p99": round(percentile(ordered, 0.99), 2),
        "max": round(ordered[-1], 2) if ordered else float("nan"),
    }


def describe(name: str, stats: dict[str, float]) -> str:
    return (
        f"{name:<22} n={int(stats['n']):<7} p50={stats['p50']:8.1f} ms  "
        f"p95={stats['p95']:8.1f} ms  p99={stats['p99']:8.1f} ms  max={stats['max']:8.1f} ms"
    )


def write_json(path: Path | None, result: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {path}")

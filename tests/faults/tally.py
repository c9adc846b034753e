"""What a scenario did: what the widgets sent, PostgreSQL stored and the dashboards showed.

PostgreSQL is the truth. A message is

- *lost* when the gateway acked it and no row holds its tempId;
- *missed* by a dashboard when a row holds it and the dashboard never showed it,
  live or through its syncs, and by a widget when it never got it confirmed
  (``messageSent`` or ``conversationHistory``);
- *duplicated* when two rows hold one tempId, or a client got one tempId under two
  message ids.

Repeats (the same message id received twice, live and then again from a sync's
overlap) are not duplicates: clients de-duplicate by id; they are counted apart.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Protocol

from tests.faults.widget import Widget


class Shows(Protocol):
    """What a dashboard showed: message id -> message (its tempId at least), and when."""

    shown: dict[int, dict[str, Any]]
    first_seen: dict[int, float]
    repeats: int


@dataclasses.dataclass(frozen=True)
class StoredRow:
    id: int
    temp_id: str
    visitor_uid: str
    seq: int


@dataclasses.dataclass
class ScenarioResult:
    name: str
    rate: float
    sent: int = 0
    acked: int = 0
    stored: int = 0
    delivered: list[int] = dataclasses.field(default_factory=list)  # per dashboard
    lost: int = 0
    missed_dashboards: int = 0
    missed_widgets: int = 0
    duplicated: int = 0
    repeats: int = 0
    max_latency_ms: float = 0.0
    p99_latency_ms: float = 0.0
    achieved_rate: float = 0.0
    may_lose: bool = False
    skipped: str = ""
    error: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)
    violations: list[str] = dataclasses.field(default_factory=list)  # a scenario's own checks

    @property
    def failed(self) -> bool:
        if self.skipped:
            return False
        if self.error or self.violations or self.duplicated:
            return True
        if self.missed_dashboards or self.missed_widgets:
            return True
        # Only the memory-only broker's restart may lose what was acked and not stored.
        return bool(self.lost) and not self.may_lose

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "failed": self.failed}


def tally(
    result: ScenarioResult,
    *,
    widgets: list[Widget],
    dashboards: list[Shows],
    rows: list[StoredRow],
) -> ScenarioResult:
    """Fill ``result`` from the clients' memories and the stored rows."""
    emitted = {o.temp_id: o.emitted_at for w in widgets for o in w.outgoing.values()}
    acked = {o.temp_id for w in widgets for o in w.outgoing.values() if o.acked}
    ours = [row for row in rows if row.temp_id in emitted]
    per_temp_id = Counter(row.temp_id for row in ours)
    stored_ids = {row.id for row in ours}
    result.sent = len(emitted)
    result.acked = len(acked)
    result.stored = len(per_temp_id)
    result.lost = len(acked - per_temp_id.keys())
    result.duplicated = sum(n - 1 for n in per_temp_id.values())
    result.duplicated += sum(len(w.duplicates) for w in widgets)

    latencies: list[float] = []
    for dash in dashboards:
        shown = stored_ids & dash.shown.keys()
        result.delivered.append(len(shown))
        result.missed_dashboards += len(stored_ids - shown)
        result.repeats += dash.repeats
        shown_temp_ids = Counter(dash.shown[i]["tempId"] for i in dash.shown if i in stored_ids)
        result.duplicated += sum(n - 1 for n in shown_temp_ids.values())
        latencies.extend(
            (dash.first_seen[i] - emitted[dash.shown[i]["tempId"]]) * 1000 for i in shown
        )
    for widget in widgets:
        mine = {row.temp_id for row in ours if row.visitor_uid == widget.uid}
        result.missed_widgets += len(mine - widget.confirmed.keys())
    if latencies:
        latencies.sort()
        result.max_latency_ms = latencies[-1]
        result.p99_latency_ms = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    foreign = len(rows) - len(ours)
    if foreign:
        result.notes.append(f"{foreign} stored rows no widget sent")
    return result


def settled(*, widgets: list[Widget], dashboards: list[Shows], rows: list[StoredRow]) -> bool:
    """Everything acked is stored, shown on every dashboard and confirmed to its widget."""
    sent = {temp_id for w in widgets for temp_id in w.outgoing}
    ours = [row for row in rows if row.temp_id in sent]
    stored_temp_ids = {row.temp_id for row in ours}
    stored_ids = {row.id for row in ours}
    for widget in widgets:
        for outgoing in widget.outgoing.values():
            if not outgoing.acked or outgoing.temp_id not in stored_temp_ids:
                return False
            if outgoing.temp_id not in widget.confirmed:
                return False
    return all(stored_ids <= dash.shown.keys() for dash in dashboards)

"""The suite's arithmetic: a loss or a duplicate it cannot see would make it useless."""

from __future__ import annotations

import time
from typing import Any

from tests.faults.dashboard import Dashboard
from tests.faults.session import contiguous
from tests.faults.tally import ScenarioResult, StoredRow, settled, tally
from tests.faults.widget import Outgoing, Widget


def widget_with(*temp_ids: str, acked: bool = True) -> Widget:
    widget = Widget(project_id=1, urls=["http://127.0.0.1:1"])
    for temp_id in temp_ids:
        widget.outgoing[temp_id] = Outgoing(
            temp_id=temp_id, content=temp_id, emitted_at=time.monotonic(), acked=acked
        )
    return widget


def message(row: StoredRow) -> dict[str, Any]:
    return {"id": row.id, "tempId": row.temp_id, "seq": row.seq, "conversationId": 7}


def showing(*rows: StoredRow) -> Dashboard:
    dash = Dashboard(name="d", project_id=1, token="t", urls=["http://127.0.0.1:1"])
    for row in rows:
        dash._show(message(row))
    return dash


def confirm(widget: Widget, *rows: StoredRow) -> None:
    for row in rows:
        widget._confirm(message(row))


def rows_for(widget: Widget, *temp_ids: str) -> list[StoredRow]:
    return [
        StoredRow(id=i + 1, temp_id=t, visitor_uid=widget.uid, seq=i + 1)
        for i, t in enumerate(temp_ids)
    ]


def run(widgets: list[Widget], dashboards: list[Dashboard], rows: list[StoredRow]) -> Any:
    result = ScenarioResult(name="s", rate=1)
    return tally(result, widgets=widgets, dashboards=dashboards, rows=rows)


def test_everything_stored_shown_and_confirmed_passes() -> None:
    widget = widget_with("a", "b")
    rows = rows_for(widget, "a", "b")
    confirm(widget, *rows)
    result = run([widget], [showing(*rows), showing(*rows)], rows)
    assert (result.sent, result.acked, result.stored, result.delivered) == (2, 2, 2, [2, 2])
    assert not result.failed
    assert settled(widgets=[widget], dashboards=[showing(*rows)], rows=rows)


def test_an_acked_message_without_a_row_is_lost() -> None:
    widget = widget_with("a", "b")
    rows = rows_for(widget, "a")
    confirm(widget, *rows)
    result = run([widget], [showing(*rows)], rows)
    assert result.lost == 1 and result.failed
    assert not settled(widgets=[widget], dashboards=[showing(*rows)], rows=rows)


def test_a_stored_message_a_dashboard_never_showed_is_missed() -> None:
    widget = widget_with("a", "b")
    rows = rows_for(widget, "a", "b")
    confirm(widget, *rows)
    result = run([widget], [showing(*rows), showing(rows[0])], rows)
    assert result.missed_dashboards == 1 and result.delivered == [2, 1] and result.failed


def test_a_message_its_widget_never_saw_confirmed_is_missed() -> None:
    widget = widget_with("a", "b")
    rows = rows_for(widget, "a", "b")
    confirm(widget, rows[0])
    result = run([widget], [showing(*rows)], rows)
    assert result.missed_widgets == 1 and result.failed


def test_one_temp_id_stored_twice_is_a_duplicate_everywhere() -> None:
    widget = widget_with("a")
    first = StoredRow(id=1, temp_id="a", visitor_uid=widget.uid, seq=1)
    second = StoredRow(id=2, temp_id="a", visitor_uid=widget.uid, seq=2)
    confirm(widget, first, second)
    result = run([widget], [showing(first, second)], [first, second])
    # The row, the widget's second confirmation, the dashboard's second message.
    assert result.duplicated == 3 and result.failed


def test_a_repeat_of_the_same_message_id_is_not_a_duplicate() -> None:
    widget = widget_with("a")
    rows = rows_for(widget, "a")
    confirm(widget, *rows, *rows)
    dash = showing(*rows, *rows)
    result = run([widget], [dash], rows)
    assert result.duplicated == 0 and result.repeats == 1 and not result.failed


def test_the_memory_broker_restart_may_lose_but_not_miss_or_duplicate() -> None:
    widget = widget_with("a", "b")
    rows = rows_for(widget, "a")
    confirm(widget, *rows)
    result = ScenarioResult(name="restart-broker", rate=1, may_lose=True)
    tally(result, widgets=[widget], dashboards=[showing(*rows)], rows=rows)
    assert result.lost == 1 and not result.failed
    result.missed_dashboards = 1
    assert result.failed
    result.missed_dashboards, result.duplicated = 0, 1
    assert result.failed


def test_contiguous_stops_at_the_first_gap() -> None:
    assert contiguous([]) == 0
    assert contiguous([2, 3]) == 0
    assert contiguous([1, 2, 4]) == 2
    assert contiguous([3, 1, 2]) == 3

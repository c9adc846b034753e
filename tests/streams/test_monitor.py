"""The worker's Faust Monitor keeps what Faust itself reads, and nothing per event besides."""

from __future__ import annotations

import time
from types import SimpleNamespace

from faust.types import TP

from streams.monitor import LeanMonitor


def test_each_event_refreshes_what_the_slow_processing_check_reads() -> None:
    monitor = LeanMonitor()
    tp = TP(topic="t", partition=3)
    before = time.monotonic()
    message = SimpleNamespace(tp=tp, offset=7)
    stream = SimpleNamespace(task_owner=None)
    event = SimpleNamespace(message=message)

    monitor.on_message_in(tp, 7, message)
    state = monitor.on_stream_event_in(tp, 7, stream, event)
    monitor.on_stream_event_out(tp, 7, stream, event, state)
    monitor.on_message_out(tp, 7, message)

    # The aiokafka driver logs a stalled stream from this timestamp.
    assert monitor.stream_inbound_time[tp] >= before
    # No statistics for web views the worker does not serve, and no state per event.
    assert state is None
    assert monitor.events_total == 0 and monitor.messages_received_total == 0
    assert not monitor.events_by_stream and not monitor.events_runtime
    assert not hasattr(message, "time_in")

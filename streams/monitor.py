"""Faust's Monitor sensor without its per-event statistics.

Faust calls its sensors four times for each message (message in, stream event
in, stream event out, message out). Its Monitor keeps, on each call, counts,
per-stream and per-task tallies, timestamps and run times: figures for Faust's
web views, which the worker does not serve (``web_enabled`` is off). Parley's
worker metrics are its own (Prometheus, :mod:`streams.agent`, :mod:`streams.lag`).

:class:`LeanMonitor` keeps the one per-event figure Faust itself reads:
``stream_inbound_time``, from which the aiokafka driver tells that a stream has
stopped taking events and logs it ("slow processing"). The hooks called per
batch, commit, send or rebalance are Faust's own.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from faust.sensors import Monitor


class LeanMonitor(Monitor):  # type: ignore[misc]
    """The app's Monitor (``conf.Monitor``), reduced to what the worker reads."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        """Nothing per message: the counts feed only the web views."""

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        # Read by the driver's slow-processing check; a state dict is not needed.
        self.stream_inbound_time[tp] = monotonic()

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        """Nothing per event: run times feed only the web views."""

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        """Nothing per message: the counts feed only the web views."""

"""The worker process: its stop bound (a stop that hangs ends the process anyway), its collector."""

from __future__ import annotations

import subprocess
import sys

from streams.app import GC_YOUNG_THRESHOLD, STOP_TIMEOUT, STOP_TIMEOUT_EXIT_CODE

KUBERNETES_GRACE = 30.0  # seconds between SIGTERM and SIGKILL


def test_the_stop_bound_is_below_the_kubernetes_grace_period() -> None:
    assert STOP_TIMEOUT < KUBERNETES_GRACE - 5


def test_a_hanging_stop_is_ended_by_the_watchdog() -> None:
    # The child would sleep 30 s; the run is cut at 20 s (an error here), so an exit
    # with the watchdog's code and message is the watchdog's doing. No wall-clock
    # bound beyond that: importing Faust alone can take seconds on a loaded machine.
    hung = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time; from streams.app import start_stop_watchdog; "
            "start_stop_watchdog(0.5); time.sleep(30)",
        ],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert hung.returncode == STOP_TIMEOUT_EXIT_CODE
    assert b"did not stop within" in hung.stderr


def test_the_collector_is_tuned_once_the_worker_has_started() -> None:
    # In a process of its own: freezing would also change this test process.
    tuned = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gc; from streams.app import tune_collector; "
            "tune_collector(); print(gc.get_threshold()[0], gc.get_freeze_count())",
        ],
        capture_output=True,
        timeout=60,
        check=True,
        text=True,
    )
    threshold, frozen = map(int, tuned.stdout.split())
    assert threshold == GC_YOUNG_THRESHOLD
    assert frozen > 10_000  # the modules and objects alive at start

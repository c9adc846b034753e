"""The worker's stop bound: a stop that hangs ends the process anyway."""

from __future__ import annotations

import subprocess
import sys
import time

from streams.app import STOP_TIMEOUT, STOP_TIMEOUT_EXIT_CODE

KUBERNETES_GRACE = 30.0  # seconds between SIGTERM and SIGKILL


def test_the_stop_bound_is_below_the_kubernetes_grace_period() -> None:
    assert STOP_TIMEOUT < KUBERNETES_GRACE - 5


def test_a_hanging_stop_is_ended_by_the_watchdog() -> None:
    began = time.monotonic()
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
    assert time.monotonic() - began < 10
    assert b"did not stop within" in hung.stderr

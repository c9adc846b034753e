"""A stopping gateway exits within its budget, and its clients can reconnect elsewhere.

The measured stop time is printed (``pytest -s``): it is what the gateway's
terminationGracePeriodSeconds in docker/k8s must cover, after the preStop sleep.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import pytest

from gateway.app import GRACEFUL_CLOSE, SHUTDOWN_BUDGET
from persistence.directory import Directory
from tests import clients
from tests.factories import uid
from tests.servers import Cluster

pytestmark = pytest.mark.e2e

INTERPRETER_EXIT = 3.0  # seconds for the process to unwind after the lifespan ends


async def test_sigterm_with_open_sockets_stops_within_the_budget(
    cluster: Cluster, directory: Directory
) -> None:
    project = await directory.create_project(name="Acme")
    await cluster.worker()
    await cluster.relay()
    leaving = await cluster.gateway("leaving")
    staying = await cluster.gateway("staying")
    visitor = uid()
    tab = await clients.visitor(leaving, project.id, visitor)
    sockets = [await clients.visitor(leaving, project.id, uid()) for _ in range(5)]
    ack = await tab.call("sendMessage", {"content": "before", "tempId": str(uuid.uuid4())})
    assert ack == {"ok": True}
    assert len(await tab.wait_for("messageSent", 1)) == 1

    child = next(c for c in cluster.children if c.name == "leaving")
    assert child.process is not None
    started = time.monotonic()
    child.process.send_signal(signal.SIGTERM)
    child.process.wait(timeout=GRACEFUL_CLOSE + SHUTDOWN_BUDGET + INTERPRETER_EXIT + 10)
    elapsed = time.monotonic() - started
    print(f"\ngateway stop time with {len(sockets) + 1} open sockets: {elapsed:.2f} s")
    assert elapsed <= GRACEFUL_CLOSE + SHUTDOWN_BUDGET + INTERPRETER_EXIT
    # uvicorn re-raises the signal it handled once it has shut down cleanly.
    assert child.process.returncode in (0, -signal.SIGTERM), child.output()[-3000:]
    assert "gateway stopped" in child.output()
    deadline = time.monotonic() + 10
    while any(r.client.connected for r in [tab, *sockets]):
        assert time.monotonic() < deadline, "clients were not disconnected"
        await asyncio.sleep(0.05)

    # The client reconnects to another gateway and gets its history: nothing lost.
    again = await clients.visitor(staying, project.id, visitor)
    [history] = await again.wait_for("conversationHistory", 1)
    assert [m["content"] for m in history["messages"]] == ["before"]
    await again.close()

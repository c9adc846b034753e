"""Redis pub/sub is at-most-once; the sync path is what makes "nothing lost" true."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway.tokens import TokenSigner
from persistence.directory import Directory
from tests import clients
from tests.factories import project_with_agent, uid
from tests.servers import Cluster

pytestmark = pytest.mark.e2e

TOTAL = 20  # messages sent while the dashboard drops out


async def test_a_dashboard_that_dropped_out_catches_up_with_sync(
    cluster: Cluster, directory: Directory, signer: TokenSigner
) -> None:
    project, agent = await project_with_agent(directory)
    [url] = await cluster.start_path()
    token = signer.issue(agent.id)
    dash = await clients.dashboard(url, token, project.id)
    first_sync = await dash.call("sync", {"projectId": project.id})
    assert first_sync["conversations"] == []
    tab = await clients.visitor(url, project.id, uid())

    async def visitor_types() -> None:
        for i in range(TOTAL):
            ack = await tab.call("sendMessage", {"content": f"m{i}", "tempId": str(uuid.uuid4())})
            assert ack == {"ok": True}
            await asyncio.sleep(0.05)

    sending = asyncio.create_task(visitor_types())
    await dash.wait_for("newMessage", 5)
    await dash.close()  # the dashboard's connection drops while messages flow
    live = dash.payloads("newMessage")
    await sending
    # The broker's ack is not the stored state: wait until the worker stored (and the
    # relay confirmed) every message before asking what the dashboard missed.
    await tab.wait_for("messageSent", TOTAL, timeout=60)

    back = await clients.dashboard(url, token, project.id)
    conversation = live[0]["conversationId"]
    seen = max(m["seq"] for m in live)
    answer = await back.call(
        "sync",
        {
            "projectId": project.id,
            "since": first_sync["cursor"],
            "lastSeqs": {str(conversation): seen},
        },
    )
    [changed] = answer["conversations"]
    assert changed["id"] == conversation and changed["lastSeq"] == TOTAL
    caught_up = answer["messages"][str(conversation)]
    assert [m["seq"] for m in caught_up] == list(range(seen + 1, TOTAL + 1))

    # What the dashboard shows: live events and the sync merged by id, in seq order.
    shown = {m["id"]: m for m in [*live, *caught_up, *back.payloads("newMessage")]}
    ordered = sorted(shown.values(), key=lambda m: m["seq"])
    assert [m["seq"] for m in ordered] == list(range(1, TOTAL + 1))
    assert [m["content"] for m in ordered] == [f"m{i}" for i in range(TOTAL)]
    await back.close()
    await tab.close()

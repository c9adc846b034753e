"""Presence across gateways: online at the first socket, offline after the last, crashes too."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from gateway.ephemeral import ephemeral_channel
from gateway.presence import Presence
from parley.embedded import free_port
from parley.settings import Settings
from persistence.directory import Directory, Project
from tests import clients
from tests.factories import uid
from tests.gateway.ephemeral import only, redis_client, settle, wait_for_subscribers
from tests.servers import Cluster, gateway_in_process


def status(project: Project, visitor_uid: str, online: bool) -> dict[str, Any]:
    return {"visitorUid": visitor_uid, "projectId": project.id, "isOnline": online}


async def test_two_tabs_on_two_gateways_are_one_visitor(
    settings: Settings, project: Project, agent_token: str
) -> None:
    async with gateway_in_process(settings) as first, gateway_in_process(settings) as second:
        await wait_for_subscribers(settings, 2)
        here = await clients.dashboard(first, agent_token, project.id)
        there = await clients.dashboard(second, agent_token, project.id)
        visitor_uid = uid()

        tab1 = await clients.visitor(first, project.id, visitor_uid)
        tab2 = await clients.visitor(second, project.id, visitor_uid)
        for dashboard in (here, there):
            online = await only(dashboard, "visitorStatusChanged", 1)
            assert online == [status(project, visitor_uid, True)]

        await tab1.close()
        await settle()
        assert len(here.payloads("visitorStatusChanged")) == 1
        await tab2.close()
        for dashboard in (here, there):
            events = await only(dashboard, "visitorStatusChanged", 2)
            assert events[1] == status(project, visitor_uid, False)
        await here.close()
        await there.close()


async def test_presence_starts_at_identify_and_stays_in_its_project(
    gateway_url: str,
    settings: Settings,
    project: Project,
    agent_token: str,
    directory: Directory,
) -> None:
    await wait_for_subscribers(settings, 1)
    other = await directory.create_project(name="Other")
    dashboard = await clients.dashboard(gateway_url, agent_token, project.id)
    stranger = await clients.visitor(gateway_url, other.id, uid())
    widget = await clients.visitor(gateway_url, project.id, None)
    await settle()
    assert dashboard.payloads("visitorStatusChanged") == []

    visitor_uid = uid()
    ack = await widget.call("identify", {"projectId": project.id, "visitorUid": visitor_uid})
    assert ack == {"ok": True}
    # Identifying again as the same visitor changes nothing.
    await widget.call("identify", {"projectId": project.id, "visitorUid": visitor_uid})
    events = await only(dashboard, "visitorStatusChanged", 1)
    assert events == [status(project, visitor_uid, True)]
    await widget.close()
    await stranger.close()
    events = await only(dashboard, "visitorStatusChanged", 2)
    assert events[1] == status(project, visitor_uid, False)
    await dashboard.close()


async def test_a_stopped_gateway_lets_go_of_its_visitors_at_once(
    settings: Settings, project: Project, agent_token: str
) -> None:
    async with gateway_in_process(settings) as first:
        dashboard = await clients.dashboard(first, agent_token, project.id)
        visitor_uid = uid()
        async with gateway_in_process(settings) as second:
            await wait_for_subscribers(settings, 2)
            await clients.visitor(second, project.id, visitor_uid)
            await dashboard.wait_for("visitorStatusChanged", 1)
            stopping = time.monotonic()
        events = await dashboard.wait_for("visitorStatusChanged", 2, timeout=5)
        assert events[1] == status(project, visitor_uid, False)
        # Long before the 30 s presence TTL.
        assert time.monotonic() - stopping < 5
        await dashboard.close()


async def test_a_killed_gateways_visitors_go_offline_within_a_few_ttls(
    settings: Settings, project: Project, agent_token: str, tmp_path: Path
) -> None:
    ttl = 2.0
    settings = settings.replace(presence_ttl=ttl)
    cluster = Cluster(settings, tmp_path)
    try:
        async with gateway_in_process(settings) as survivor:
            doomed = await cluster.gateway("doomed")
            await wait_for_subscribers(settings, 2)
            dashboard = await clients.dashboard(survivor, agent_token, project.id)
            gone, staying = uid(), uid()
            await clients.visitor(doomed, project.id, gone)
            await clients.visitor(doomed, project.id, staying)
            kept_tab = await clients.visitor(survivor, project.id, staying)
            await only(dashboard, "visitorStatusChanged", 2)

            cluster.children[-1].kill()
            killed = time.monotonic()
            events = await dashboard.wait_for("visitorStatusChanged", 3, timeout=4 * ttl)
            assert events[2] == status(project, gone, False), events
            assert time.monotonic() - killed < 3 * ttl
            # The visitor with a tab on the survivor is still online.
            await settle(ttl)
            assert len(dashboard.payloads("visitorStatusChanged")) == 3
            await kept_tab.close()
            events = await dashboard.wait_for("visitorStatusChanged", 4)
            assert events[3] == status(project, staying, False)
            await dashboard.close()
    finally:
        cluster.stop()


async def test_a_gateway_back_after_its_heartbeat_lapsed_registers_again(
    settings: Settings,
) -> None:
    namespace = f"{settings.events_channel}:presence"
    channel = ephemeral_channel(settings.events_channel)
    async with redis_client(settings) as client:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel)

        def presence() -> Presence:
            return Presence(
                client=client,
                namespace=namespace,
                channel=channel,
                ttl=30,
                gateway_id=uuid.uuid4().hex,
            )

        lapsing, sweeper = presence(), presence()
        await lapsing.beat()
        await sweeper.beat()
        await lapsing.attach("sid-1", project_id=7, visitor_uid="v-1")
        await lapsing.attach("sid-2", project_id=7, visitor_uid="v-1")
        await client.delete(f"{namespace}:gateway:{lapsing.gateway_id}:alive")
        await sweeper.sweep()
        await sweeper.sweep()  # the lock and the emptied hash: nothing twice
        await lapsing.beat()  # finds its heartbeat gone and attaches again

        received = []
        deadline = time.monotonic() + 5
        while len(received) < 3 and time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=0.2)
            if message is not None:
                received.append(json.loads(message["data"])["data"]["isOnline"])
        assert received == [True, False, True]
        # And a closed gateway leaves nothing behind.
        await lapsing.close()
        await sweeper.close()
        assert await client.keys(f"{namespace}:gateway*") == []
        assert await client.keys(f"{namespace}:visitor*") == []
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_visitors_connect_and_type_while_redis_is_down(
    settings: Settings, project: Project
) -> None:
    unreachable = settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with gateway_in_process(unreachable) as url:
        visitor = await clients.visitor(url, project.id, uid())
        assert await visitor.call("visitorIsTyping", {"isTyping": True}) == {"ok": True}
        await visitor.close()
        await asyncio.sleep(0.1)

"""Fuzz campaign, socket events: every call with hostile input gets a clear answer, the
gateway keeps serving others, and a refused call stores and produces nothing.

One gateway, one visitor socket and one dashboard socket serve every example of a
test; a second pair of sockets (the "others") must still be served after each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import socketio
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.sockets import MAX_PAYLOAD
from gateway.tokens import TokenSigner
from parley.settings import Settings
from persistence.directory import Directory
from persistence.store import MessageStore
from tests import clients
from tests.factories import incoming, project_with_agent
from tests.gateway import fuzz
from tests.servers import gateway_in_process

Fields = Callable[["Campaign"], dict[str, st.SearchStrategy[Any]]]
contents = st.just("hello") | st.text(min_size=1, max_size=40)
METADATA = {
    "referrer": None,
    "landingPage": "https://shop.test/",
    "urlHistory": [{"url": "https://shop.test/a", "title": "A", "timestamp": 1}],
}

# event -> (which socket sends it, the valid value of each field)
EVENTS: dict[str, tuple[str, Fields]] = {
    "identify": (
        "visitor",
        lambda c: {
            "projectId": st.just(c.project_id),
            "visitorUid": st.just(c.visitor_uid) | st.uuids(version=4).map(str),
            "lastSeq": st.integers(min_value=0, max_value=10),
        },
    ),
    "sendMessage": (
        "visitor",
        lambda c: {
            "content": contents,
            "tempId": fuzz.temp_ids(),
            "sessionMetadata": st.just(METADATA),
        },
    ),
    "markRead": ("visitor", lambda c: {"upToSeq": st.integers(min_value=0, max_value=3)}),
    "markDelivered": ("visitor", lambda c: {"upToSeq": st.integers(min_value=0, max_value=3)}),
    "updateContext": (
        "visitor",
        lambda c: {
            "currentUrl": st.just("https://shop.test/p"),
            "currentTitle": st.just("P") | st.none(),
        },
    ),
    "visitorIsTyping": ("visitor", lambda c: {"isTyping": st.booleans()}),
    "joinProjectRoom": ("dashboard", lambda c: {"projectId": st.just(c.project_id)}),
    "sync": (
        "dashboard",
        lambda c: {
            "projectId": st.just(c.project_id),
            "since": st.none(),
            "lastSeqs": st.just({str(c.conversation_id): 0}),
        },
    ),
    "sendReply": (
        "dashboard",
        lambda c: {
            "conversationId": st.just(c.conversation_id),
            "content": contents,
            "tempId": fuzz.temp_ids(),
        },
    ),
    "agentTyping": (
        "dashboard",
        lambda c: {"conversationId": st.just(c.conversation_id), "isTyping": st.booleans()},
    ),
}
PACKET_MARGIN = 1_000  # bytes of Socket.IO framing our size estimate leaves out
OVERSIZED_TIMEOUT = 3.0  # seconds for the gateway to close a socket past the limit


@dataclasses.dataclass(kw_only=True)
class Campaign:
    url: str
    project_id: int
    token: str
    visitor_uid: str
    conversation_id: int
    engine: AsyncEngine
    sockets: dict[str, clients.Recorder] = dataclasses.field(default_factory=dict)
    produced: dict[str, list[str]] = dataclasses.field(
        default_factory=lambda: {"visitor": [], "dashboard": []}
    )

    async def socket(self, role: str) -> clients.Recorder:
        """The socket for ``role``, reconnected if the last example got it closed."""
        current = self.sockets.get(role)
        if current is not None and current.client.connected:
            return current
        if role in ("visitor", "other-visitor"):
            uid = self.visitor_uid if role == "visitor" else str(uuid.uuid4())
            current = await clients.visitor(self.url, self.project_id, uid)
        else:
            current = await clients.dashboard(self.url, self.token, self.project_id)
        self.sockets[role] = current
        return current

    async def others_are_served(self) -> None:
        other = await self.socket("other-visitor")
        hello = {"projectId": self.project_id, "visitorUid": other_uid(other)}
        assert await other.call("identify", hello, timeout=fuzz.ACK_TIMEOUT) == {"ok": True}
        board = await self.socket("other-dashboard")
        answer = await board.call("sync", {"projectId": self.project_id}, timeout=fuzz.ACK_TIMEOUT)
        assert "cursor" in answer, answer

    async def close(self) -> None:
        for recorder in self.sockets.values():
            if recorder.client.connected:
                await recorder.close()


def other_uid(recorder: clients.Recorder) -> str:
    uid: str = recorder.client.connection_auth["visitorUid"]
    return uid


@pytest.fixture
async def campaign(
    settings: Settings, directory: Directory, engine: AsyncEngine
) -> AsyncIterator[Campaign]:
    project, agent = await project_with_agent(directory)
    visitor_uid = str(uuid.uuid4())
    seeded = await MessageStore(engine=engine).append([incoming(project.id, visitor_uid, "seed")])
    relaxed = fuzz.relaxed(settings)
    async with gateway_in_process(relaxed) as url:
        run = Campaign(
            url=url,
            project_id=project.id,
            token=TokenSigner(secret=settings.secret, ttl=settings.token_ttl).issue(agent.id),
            visitor_uid=visitor_uid,
            conversation_id=int(seeded.stored[-1]["conversationId"]),
            engine=engine,
        )
        try:
            yield run
        finally:
            await run.close()
    # Nothing partial: the topics hold exactly what was acked, and no more.
    assert settings.kafka_bootstrap_servers
    for role, topic in (("visitor", settings.visitor_topic), ("dashboard", settings.agent_topic)):
        on_topic = await fuzz.topic_temp_ids(settings.kafka_bootstrap_servers, topic)
        assert sorted(on_topic) == sorted(run.produced[role]), topic


def accepted(event: str, ack: Any) -> bool:
    """Whether the call was accepted; a failed assertion if its answer is not clear."""
    if event == "joinProjectRoom":
        assert isinstance(ack, dict) and ack.get("status") in ("ok", "error"), ack
        assert ack["status"] == "ok" or (isinstance(ack.get("message"), str) and ack["message"])
        return bool(ack["status"] == "ok")
    if event == "sync":
        return fuzz.assert_answered(ack, accepted=lambda a: "cursor" in a)
    return fuzz.assert_answered(ack, accepted=lambda a: a == {"ok": True} or a.get("ok") is True)


@pytest.mark.parametrize("event", sorted(EVENTS))
@fuzz.FUZZ
@given(data=st.data())
async def test_every_event_answers_hostile_input(
    campaign: Campaign, event: str, data: st.DataObject
) -> None:
    role, fields = EVENTS[event]
    shape = data.draw(st.sampled_from(["one"] * 8 + ["none", "two"]), label="arguments")
    payload: Any
    if shape == "one":
        payload = data.draw(fuzz.payloads(fields(campaign)), label="payload")
    elif shape == "two":
        payload = data.draw(st.tuples(fuzz.values, fuzz.values), label="payload")
    else:
        payload = None  # the client sends the event with no argument
    socket = await campaign.socket(role)
    before = await fuzz.snapshot(campaign.engine)

    if fuzz.encoded_size(payload) > MAX_PAYLOAD - PACKET_MARGIN:
        # Several huge fields together pass the packet limit: the gateway closes the
        # socket, as Engine.IO does, and must go on serving everyone else.
        with contextlib.suppress(socketio.exceptions.TimeoutError):
            await socket.call(event, payload, timeout=OVERSIZED_TIMEOUT)
        assert not socket.client.connected, "a packet over the limit was accepted"
        assert await fuzz.snapshot(campaign.engine) == before
        await campaign.others_are_served()
        return
    ack = await socket.call(event, payload, timeout=fuzz.ACK_TIMEOUT)

    if accepted(event, ack):
        if event in ("sendMessage", "sendReply"):
            campaign.produced[role].append(payload["tempId"])
    else:
        assert await fuzz.snapshot(campaign.engine) == before, "a refused call changed the database"
    assert socket.client.connected, "the gateway closed a socket that sent a packet under 1 MB"
    await campaign.others_are_served()

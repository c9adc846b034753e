"""Paged catch-up (``Conversations.sync``) always completes, within its bounds, on PostgreSQL."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.catchup import (
    SYNC_MAX_BYTES,
    SYNC_MAX_CONVERSATIONS,
    SYNC_MAX_MESSAGES,
    SyncLimits,
    json_size,
)
from persistence.conversations import Conversations
from persistence.cursors import InvalidCursor, SyncCursor
from persistence.directory import Directory, Project
from persistence.models import conversations, messages
from persistence.store import MessageStore
from tests.factories import incoming, uid

PAGE_CAP = 1_000  # answers one catch-up may take before the test calls it endless


@pytest.fixture
async def project(directory: Directory) -> Project:
    return await directory.create_project(name="Acme")


@pytest.fixture
def store(engine: AsyncEngine) -> MessageStore:
    return MessageStore(engine=engine)


class Dashboard:
    """What a dashboard holds, following the protocol: page until hasMore is false."""

    def __init__(self, chats: Conversations, project_id: int, limits: SyncLimits) -> None:
        self.chats = chats
        self.project_id = project_id
        self.limits = limits
        self.held: dict[int, dict[str, Any]] = {}  # message id -> message
        self.cursor: str | None = None
        self.answers: list[dict[str, Any]] = []

    def last_seqs(self) -> dict[int, int]:
        seqs: dict[int, int] = {}
        for message in self.held.values():
            conversation = message["conversationId"]
            seqs[conversation] = max(seqs.get(conversation, 0), message["seq"])
        return seqs

    async def catch_up(self, *, between_pages: Any = None) -> list[int]:
        """One catch-up, paged; returns the message ids received, repeats included."""
        last_seqs = self.last_seqs()  # the same for every page of this catch-up
        since = self.cursor
        received: list[int] = []
        for page in range(PAGE_CAP):
            answer = await self.chats.sync(
                project_id=self.project_id,
                since=SyncCursor.decode(since) if since else None,
                last_seqs=last_seqs,
            )
            self.check_bounds(answer)
            self.answers.append(answer)
            for listed in answer["messages"].values():
                for message in listed:
                    received.append(message["id"])
                    self.held[message["id"]] = message
            since = answer["cursor"]
            if not answer["hasMore"]:
                self.cursor = since
                return received
            if between_pages is not None:
                await between_pages(page)
        raise AssertionError(f"the catch-up did not complete in {PAGE_CAP} answers")

    def check_bounds(self, answer: dict[str, Any]) -> None:
        assert len(answer["conversations"]) <= self.limits.conversations
        assert all(len(listed) <= self.limits.messages for listed in answer["messages"].values())
        assert json_size(answer) <= self.limits.bytes
        assert set(answer["messages"]) == {str(c["id"]) for c in answer["conversations"]}


async def stored(engine: AsyncEngine, project_id: int) -> dict[int, tuple[int, int]]:
    """Every message of the project: id -> (conversation, seq)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(messages.c.id, messages.c.conversation_id, messages.c.seq).where(
                messages.c.project_id == project_id
            )
        )
        return {row.id: (row.conversation_id, row.seq) for row in rows}


async def backdate(engine: AsyncEngine) -> None:
    """Everything so far happened a minute ago, long before the overlap."""
    async with engine.begin() as conn:
        await conn.execute(
            conversations.update().values(
                updated_at=conversations.c.updated_at - sa.text("interval '1 minute'")
            )
        )


async def test_300_conversations_changing_while_away_complete_exactly_once(
    engine: AsyncEngine, store: MessageStore, project: Project
) -> None:
    chats = Conversations(engine=engine)
    dashboard = Dashboard(chats, project.id, SyncLimits())
    visitors = [uid() for _ in range(300)]
    await store.append([incoming(project.id, v, "first") for v in visitors])
    await backdate(engine)
    first = await dashboard.catch_up()
    assert len(set(first)) == len(first) == 300
    assert len(dashboard.answers) == 300 // SYNC_MAX_CONVERSATIONS

    # Away: all 300 conversations change (three messages each), 20 new ones open.
    await store.append([incoming(project.id, v, f"away {i}") for i in range(3) for v in visitors])
    await store.append([incoming(project.id, uid(), "new") for _ in range(20)])

    async def meanwhile(page: int) -> None:
        # Changes while the dashboard pages: some it has been sent, some still ahead.
        if page == 1:
            await store.append([incoming(project.id, v, "late") for v in visitors[::30]])

    dashboard.answers.clear()
    away = await dashboard.catch_up(between_pages=meanwhile)
    assert len(away) == len(set(away))  # one catch-up sends each message once
    assert len(dashboard.answers) >= 320 // SYNC_MAX_CONVERSATIONS
    assert [a["hasMore"] for a in dashboard.answers][-1] is False
    # The last cursor looks back before the first answer: the next catch-up gets the late ones.
    await dashboard.catch_up()
    assert set(dashboard.held) == set(await stored(engine, project.id))
    assert len(dashboard.held) == 300 + 900 + 20 + 10


async def test_a_conversation_longer_than_one_answer_completes_over_later_pages(
    engine: AsyncEngine, store: MessageStore, project: Project
) -> None:
    chats = Conversations(engine=engine)
    dashboard = Dashboard(chats, project.id, SyncLimits())
    chatty, quiet = uid(), uid()
    await store.append([incoming(project.id, chatty, "hello"), incoming(project.id, quiet, "hi")])
    await backdate(engine)
    await dashboard.catch_up()
    total = 2 * SYNC_MAX_MESSAGES + 50
    result = await store.append([incoming(project.id, chatty, f"m{i}") for i in range(total)])
    long_id = result.stored[0]["conversationId"]
    others = [uid() for _ in range(5)]
    await store.append([incoming(project.id, v, "other") for v in others])

    dashboard.answers.clear()
    received = await dashboard.catch_up()
    per_answer = [len(a["messages"].get(str(long_id), [])) for a in dashboard.answers]
    assert per_answer[:3] == [SYNC_MAX_MESSAGES, SYNC_MAX_MESSAGES, 50]
    assert len(received) == len(set(received)) == total + len(others)
    seqs = sorted(m["seq"] for m in dashboard.held.values() if m["conversationId"] == long_id)
    assert seqs == list(range(1, total + 2))
    assert set(dashboard.held) == set(await stored(engine, project.id))


async def test_answers_stay_under_the_byte_bound(
    engine: AsyncEngine, store: MessageStore, project: Project
) -> None:
    chats = Conversations(engine=engine)
    dashboard = Dashboard(chats, project.id, SyncLimits())
    # Escaped as \\u00e9, each message is about 30 kB of JSON: ~33 fit in 1 MB.
    wide = "é" * 5_000
    visitor = uid()
    await store.append([incoming(project.id, visitor, "hello")])
    await backdate(engine)
    await dashboard.catch_up()
    await store.append([incoming(project.id, visitor, wide) for _ in range(100)])
    dashboard.answers.clear()
    received = await dashboard.catch_up()
    assert len(received) == len(set(received)) == 100
    assert len(dashboard.answers) >= 4
    assert all(json_size(a) > SYNC_MAX_BYTES * 0.9 for a in dashboard.answers[:-1])
    assert set(dashboard.held) == set(await stored(engine, project.id))


@pytest.mark.parametrize(
    ("conversations_", "messages_", "bytes_"), [(3, 4, 4_000), (1, 1, 2_000), (7, 50, 20_000)]
)
async def test_any_bounds_page_to_the_same_whole(
    engine: AsyncEngine,
    store: MessageStore,
    project: Project,
    conversations_: int,
    messages_: int,
    bytes_: int,
) -> None:
    limits = SyncLimits(conversations=conversations_, messages=messages_, bytes=bytes_)
    dashboard = Dashboard(Conversations(engine=engine, sync_limits=limits), project.id, limits)
    visitors = [uid() for _ in range(12)]
    await store.append([incoming(project.id, v, f"m{i}") for v in visitors for i in range(i_(v))])
    received = await dashboard.catch_up()
    # Without lastSeqs, a conversation the dashboard does not list brings its last 50.
    assert len(received) == len(set(received))
    assert set(dashboard.held) == set(await stored(engine, project.id))
    await store.append([incoming(project.id, v, "more") for v in visitors[:5]])
    await dashboard.catch_up()
    assert set(dashboard.held) == set(await stored(engine, project.id))


def i_(visitor: str) -> int:
    """A few messages per visitor, a different number for each (at most 40, under 50)."""
    return 1 + int(visitor[-4:], 16) % 40


def test_a_tampered_continuation_is_refused() -> None:
    def forged(body: Any) -> str:
        raw = json.dumps({"k": "sync", "s": "2026-01-01T00:00:00+00:00", "r": body}).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    good = {"n": "2026-01-01T00:00:00+00:00", "i": 5}
    assert SyncCursor.decode(forged(good)).resume is not None
    for bad in (
        {**good, "i": 2**63},
        {**good, "i": "5"},
        {**good, "c": 7},  # a cut conversation without its seq
        {**good, "c": 7, "q": -1},
        {"i": 5},
        [1, 2],
    ):
        with pytest.raises(InvalidCursor):
            SyncCursor.decode(forged(bad))


async def test_a_conversation_changing_ahead_of_the_walk_is_still_visited(
    engine: AsyncEngine, store: MessageStore, project: Project
) -> None:
    """One catch-up brings everything stored before it began, however the walk is overtaken.

    Live events carry what changes after; a conversation that changed while the
    dashboard was away and again while it paged must not be left for "the next
    catch-up", or its new live messages land on top of a hole.
    """
    chats = Conversations(engine=engine)
    dashboard = Dashboard(chats, project.id, SyncLimits())
    visitors = [uid() for _ in range(300)]
    await store.append([incoming(project.id, v, "first") for v in visitors])
    await backdate(engine)
    await dashboard.catch_up()

    await store.append([incoming(project.id, v, "away") for v in visitors])
    before = await stored(engine, project.id)

    async def meanwhile(page: int) -> None:
        if page == 0:
            # Every conversation the walk has not reached yet changes again.
            await store.append([incoming(project.id, v, "late") for v in visitors])

    dashboard.answers.clear()
    await dashboard.catch_up(between_pages=meanwhile)
    assert len(dashboard.answers) > 1
    missing = set(before) - set(dashboard.held)
    assert not missing, f"{len(missing)} messages stored before the catch-up never came"

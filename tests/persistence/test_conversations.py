"""The dashboard's conversation queries and changes, against a real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.catchup import SYNC_MAX_CONVERSATIONS
from persistence.conversations import SYNC_HISTORY, Conversations
from persistence.cursors import InvalidCursor, PageCursor, SyncCursor
from persistence.directory import Directory, Project
from persistence.errors import Conflict, NotFound
from persistence.models import conversations, messages, outbox
from persistence.store import MessageStore
from tests.factories import incoming, uid


@pytest.fixture
async def project(directory: Directory) -> Project:
    return await directory.create_project(name="Acme")


@pytest.fixture
def store(engine: AsyncEngine) -> MessageStore:
    return MessageStore(engine=engine)


@pytest.fixture
def chats(engine: AsyncEngine) -> Conversations:
    return Conversations(engine=engine)


async def seed(store: MessageStore, project_id: int, visitor: str, count: int = 1) -> int:
    """Store ``count`` messages of one visitor; return the conversation id."""
    result = await store.append([incoming(project_id, visitor, f"m{i}") for i in range(count)])
    return int(result.stored[-1]["conversationId"])


async def backdate(engine: AsyncEngine, *, minutes: int = 1) -> None:
    """Pretend everything so far happened a while ago (a dashboard offline that long)."""
    async with engine.begin() as conn:
        await conn.execute(
            conversations.update().values(
                updated_at=conversations.c.updated_at - sa.text(f"interval '{minutes} minutes'")
            )
        )


async def outbox_events(engine: AsyncEngine, *types: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.payload).where(outbox.c.event_type.in_(types)).order_by(outbox.c.id)
        )
        return [row.payload for row in rows]


async def test_pages_newest_first_with_a_stable_cursor(
    store: MessageStore, chats: Conversations, project: Project
) -> None:
    ids = [await seed(store, project.id, uid()) for _ in range(3)]
    # One batch, one transaction: three conversations with the same updated_at.
    tied = await store.append([incoming(project.id, uid()) for _ in range(3)])
    ids += sorted({m["conversationId"] for m in tied.stored})
    # A later message moves the first conversation to the top.
    await seed(
        store,
        project.id,
        (await chats.get(project_id=project.id, conversation_id=ids[0]))["visitor"]["uid"],
    )
    expected = [ids[0], *reversed(ids[3:]), ids[2], ids[1]]

    seen: list[int] = []
    cursor = None
    for _ in range(10):
        page = await chats.page(project_id=project.id, cursor=cursor, limit=2)
        seen += [item["id"] for item in page.items]
        if page.next_cursor is None:
            break
        cursor = PageCursor.decode(page.next_cursor)
    assert seen == expected
    first = (await chats.page(project_id=project.id, limit=1)).items[0]
    assert first["lastSeq"] == 2 and first["unreadCount"] == 2
    assert first["lastMessageSnippet"] == "m0" and first["lastMessageAt"].endswith("Z")
    assert set(first) == {
        "id",
        "visitor",
        "status",
        "unreadCount",
        "lastMessageSnippet",
        "lastMessageAt",
        "lastSeq",
        "visitorDeliveredSeq",
        "visitorReadSeq",
        "agentReadSeq",
        "updatedAt",
    }


async def test_status_filter_and_cursor_kinds(
    store: MessageStore, chats: Conversations, project: Project
) -> None:
    open_id = await seed(store, project.id, uid())
    closed_id = await seed(store, project.id, uid())
    await chats.update(project_id=project.id, conversation_id=closed_id, status="closed")
    assert [i["id"] for i in (await chats.page(project_id=project.id, status="open")).items] == [
        open_id
    ]
    assert [i["id"] for i in (await chats.page(project_id=project.id, status="closed")).items] == [
        closed_id
    ]
    sync_cursor = (await chats.sync(project_id=project.id))["cursor"]
    with pytest.raises(InvalidCursor):
        PageCursor.decode(sync_cursor)
    for garbage in ("", "x", "eyJrIjoicGFnZSJ9", "!!!"):
        with pytest.raises(InvalidCursor):
            PageCursor.decode(garbage)


async def test_read_resets_unread_marks_messages_and_records_two_events(
    engine: AsyncEngine, store: MessageStore, chats: Conversations, project: Project
) -> None:
    visitor = uid()
    conversation_id = await seed(store, project.id, visitor, count=3)

    item = await chats.update(project_id=project.id, conversation_id=conversation_id, read=True)

    assert item["unreadCount"] == 0 and item["lastSeq"] == 3
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(conversations).where(conversations.c.id == conversation_id)
            )
        ).one()
        statuses = (await conn.execute(sa.select(messages.c.status))).scalars().all()
    assert row.agent_read_seq == 3 and row.unread_count == 0
    assert set(statuses) == {"read"}
    route = {"projectId": project.id, "conversationId": conversation_id, "visitorUid": visitor}
    assert await outbox_events(engine, "conversation.updated", "messages.read") == [
        {"type": "conversation.updated", **route, "fields": {"unreadCount": 0}},
        {"type": "messages.read", **route, "upToSeq": 3, "by": "agent"},
    ]
    # Reading again changes nothing, so it records nothing.
    await chats.update(project_id=project.id, conversation_id=conversation_id, read=True)
    assert len(await outbox_events(engine, "conversation.updated", "messages.read")) == 2


async def test_close_reopen_and_the_reopen_conflict(
    engine: AsyncEngine, store: MessageStore, chats: Conversations, project: Project
) -> None:
    visitor = uid()
    first = await seed(store, project.id, visitor)
    closed = await chats.update(project_id=project.id, conversation_id=first, status="closed")
    assert closed["status"] == "closed"
    reopened = await chats.update(project_id=project.id, conversation_id=first, status="open")
    assert reopened["status"] == "open"
    assert reopened["updatedAt"] >= closed["updatedAt"]
    fields = [e["fields"] for e in await outbox_events(engine, "conversation.updated")]
    assert fields == [{"status": "closed"}, {"status": "open"}]

    await chats.update(project_id=project.id, conversation_id=first, status="closed")
    second = await seed(store, project.id, visitor)  # the visitor writes again: a new one
    assert second != first
    with pytest.raises(Conflict):
        await chats.update(project_id=project.id, conversation_id=first, status="open")
    still = await chats.get(project_id=project.id, conversation_id=first)
    assert still["status"] == "closed"


async def test_other_projects_conversations_are_not_found(
    store: MessageStore, chats: Conversations, project: Project, directory: Directory
) -> None:
    other = await directory.create_project(name="Other")
    theirs = await seed(store, other.id, uid())
    with pytest.raises(NotFound):
        await chats.get(project_id=project.id, conversation_id=theirs)
    with pytest.raises(NotFound):
        await chats.update(project_id=project.id, conversation_id=theirs, read=True)
    with pytest.raises(NotFound):
        await chats.visitor(project_id=project.id, visitor_uid="nobody")


async def test_visitor_details_use_the_open_conversation(
    store: MessageStore, chats: Conversations, project: Project
) -> None:
    visitor = uid()
    metadata = {
        "referrer": "https://search.example/?q=acme",
        "landingPage": "https://acme.example/pricing",
        "urlHistory": [{"url": "https://acme.example/pricing", "title": "Pricing", "timestamp": 1}],
    }
    old = await seed(store, project.id, visitor)
    await chats.update(project_id=project.id, conversation_id=old, status="closed")
    await store.append([incoming(project.id, visitor, "again", session_metadata=metadata)])

    details = await chats.visitor(project_id=project.id, visitor_uid=visitor)

    assert details["uid"] == visitor and details["projectId"] == project.id
    assert details["createdAt"].endswith("Z") and details["lastSeenAt"].endswith("Z")
    assert details["sessionMetadata"] == metadata
    assert details["pageHistory"] == []
    assert [(c["status"], c["lastSeq"]) for c in details["conversations"]] == [
        ("open", 1),
        ("closed", 1),
    ]


async def test_sync_returns_exactly_what_changed_after_the_cursor(
    engine: AsyncEngine, store: MessageStore, chats: Conversations, project: Project
) -> None:
    a, b = uid(), uid()
    a_id = await seed(store, project.id, a, count=2)
    await seed(store, project.id, b, count=2)
    await backdate(engine)
    first = await chats.sync(project_id=project.id)
    assert len(first["conversations"]) == 2
    assert [m["seq"] for m in first["messages"][str(a_id)]] == [1, 2]

    await store.append([incoming(project.id, a, "a3"), incoming(project.id, a, "a4")])
    c_id = await seed(store, project.id, uid(), count=1)
    later = await chats.sync(
        project_id=project.id, since=SyncCursor.decode(first["cursor"]), last_seqs={a_id: 2}
    )

    assert [c["id"] for c in later["conversations"]] == [c_id, a_id]
    assert set(later["messages"]) == {str(a_id), str(c_id)}
    assert [m["content"] for m in later["messages"][str(a_id)]] == ["a3", "a4"]
    assert [m["seq"] for m in later["messages"][str(c_id)]] == [1]
    assert later["hasMore"] is False
    # The new cursor looks back SYNC_OVERLAP seconds: the same changes come again.
    again = await chats.sync(
        project_id=project.id, since=SyncCursor.decode(later["cursor"]), last_seqs={a_id: 4}
    )
    assert {c["id"] for c in again["conversations"]} == {a_id, c_id}
    assert again["messages"][str(a_id)] == []


async def test_sync_sends_the_last_messages_of_unlisted_conversations(
    store: MessageStore, chats: Conversations, project: Project
) -> None:
    conversation_id = await seed(store, project.id, uid(), count=SYNC_HISTORY + 10)
    body = await chats.sync(project_id=project.id)
    seqs = [m["seq"] for m in body["messages"][str(conversation_id)]]
    assert seqs == list(range(11, SYNC_HISTORY + 11))


async def test_sync_caps_the_conversations_and_says_so(
    store: MessageStore, chats: Conversations, project: Project
) -> None:
    await store.append([incoming(project.id, uid()) for _ in range(SYNC_MAX_CONVERSATIONS + 1)])
    body = await chats.sync(project_id=project.id)
    assert len(body["conversations"]) == SYNC_MAX_CONVERSATIONS
    assert body["hasMore"] is True

"""Receipts and page context reported by the widget."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.activity import PAGE_HISTORY_LIMIT, Activity
from persistence.directory import Directory
from persistence.models import conversations, messages, outbox
from persistence.store import MessageStore
from tests.factories import incoming, uid


async def seed_conversation(engine: AsyncEngine, directory: Directory) -> tuple[int, str, int]:
    project = await directory.create_project(name="p")
    agent = await directory.add_agent(project_id=project.id, email="a@p.test")
    visitor = uid()
    store = MessageStore(engine=engine)
    first = await store.append([incoming(project.id, visitor, "hi")])
    conversation = first.stored[0]["conversationId"]
    await store.append(
        [
            incoming(
                project.id,
                visitor,
                f"reply {i}",
                sender_type="agent",
                conversation_id=conversation,
                agent_id=agent.id,
            )
            for i in range(3)
        ]
    )
    return project.id, visitor, conversation


async def test_page_history_keeps_the_latest_50(engine: AsyncEngine, directory: Directory) -> None:
    project_id, visitor, conversation = await seed_conversation(engine, directory)
    activity = Activity(engine=engine)
    for i in range(PAGE_HISTORY_LIMIT + 7):
        stored = await activity.update_context(
            project_id=project_id, visitor_uid=visitor, url=f"/page/{i}", title=None
        )
        assert stored == conversation
    async with engine.connect() as conn:
        history = await conn.scalar(sa.select(conversations.c.page_history))
    assert len(history) == 50
    assert history[0]["url"] == "/page/7" and history[-1]["url"] == "/page/56"


async def test_context_without_a_conversation_stores_nothing(
    engine: AsyncEngine, directory: Directory
) -> None:
    project = await directory.create_project(name="p")
    stored = await Activity(engine=engine).update_context(
        project_id=project.id, visitor_uid=uid(), url="/", title="Home"
    )
    assert stored is None


async def test_receipts_move_status_forward_only(engine: AsyncEngine, directory: Directory) -> None:
    project_id, visitor, _ = await seed_conversation(engine, directory)
    activity = Activity(engine=engine)

    assert (
        await activity.visitor_received(project_id=project_id, visitor_uid=visitor, up_to_seq=3)
        == 3
    )
    assert await activity.visitor_read(project_id=project_id, visitor_uid=visitor, up_to_seq=2) == 2
    # Stale or repeated receipts change nothing and record no event.
    assert (
        await activity.visitor_received(project_id=project_id, visitor_uid=visitor, up_to_seq=2)
        is None
    )
    assert (
        await activity.visitor_read(project_id=project_id, visitor_uid=visitor, up_to_seq=1) is None
    )
    # A seq beyond the conversation is clamped to what exists.
    assert (
        await activity.visitor_read(project_id=project_id, visitor_uid=visitor, up_to_seq=99) == 4
    )

    async with engine.connect() as conn:
        statuses = dict(
            (await conn.execute(sa.select(messages.c.seq, messages.c.status))).tuples().all()
        )
        events = (
            (await conn.execute(sa.select(outbox.c.event_type).order_by(outbox.c.id)))
            .scalars()
            .all()
        )
    assert statuses == {1: "sent", 2: "read", 3: "read", 4: "read"}
    assert events[-3:] == ["messages.delivered", "messages.read", "messages.read"]


async def test_conversation_items_carry_the_receipt_seqs(
    engine: AsyncEngine, directory: Directory
) -> None:
    """A dashboard that was away redraws delivered/read ticks from the sync items."""
    from persistence.conversations import Conversations

    project_id, visitor, conversation = await seed_conversation(engine, directory)
    activity = Activity(engine=engine)
    await activity.visitor_received(project_id=project_id, visitor_uid=visitor, up_to_seq=4)
    await activity.visitor_read(project_id=project_id, visitor_uid=visitor, up_to_seq=3)
    page = await Conversations(engine=engine).page(project_id=project_id, limit=5)
    [item] = page.items
    assert item["id"] == conversation
    assert (item["visitorDeliveredSeq"], item["visitorReadSeq"], item["agentReadSeq"]) == (4, 3, 0)

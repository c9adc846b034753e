"""What a visitor's widget reports: read and delivery receipts, the page being viewed.

Each report updates the visitor's open conversation and records an outbox event
in the same transaction, so dashboards learn of it through the relay like any
other change, in order with the messages around it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from persistence.errors import wrap_errors
from persistence.models import conversations, messages, visitors
from persistence.outbox import CONTEXT_UPDATED, MESSAGES_DELIVERED, MESSAGES_READ, record_events

PAGE_HISTORY_LIMIT = 50  # entries; the oldest are dropped


class Activity:
    """Receipts and context updates from the widget side."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _lock_open(self, conn: AsyncConnection, project_id: int, visitor_uid: str) -> Any:
        return (
            await conn.execute(
                sa.select(conversations)
                .join(visitors, visitors.c.id == conversations.c.visitor_id)
                .where(
                    visitors.c.project_id == project_id,
                    visitors.c.uid == visitor_uid,
                    conversations.c.status == "open",
                )
                .with_for_update(of=conversations)
            )
        ).one_or_none()

    async def visitor_read(
        self, *, project_id: int, visitor_uid: str, up_to_seq: int
    ) -> int | None:
        """The visitor read agent messages up to ``up_to_seq``; None when nothing changed."""
        return await self._receipt(project_id, visitor_uid, up_to_seq, read=True)

    async def visitor_received(
        self, *, project_id: int, visitor_uid: str, up_to_seq: int
    ) -> int | None:
        """The widget received agent messages up to ``up_to_seq``; None when nothing changed."""
        return await self._receipt(project_id, visitor_uid, up_to_seq, read=False)

    async def _receipt(
        self, project_id: int, visitor_uid: str, up_to_seq: int, *, read: bool
    ) -> int | None:
        async with wrap_errors(), self._engine.begin() as conn:
            conversation = await self._lock_open(conn, project_id, visitor_uid)
            if conversation is None:
                return None
            # A widget cannot acknowledge what was never sent to it.
            up_to = int(min(up_to_seq, conversation.last_seq))
            column = "visitor_read_seq" if read else "visitor_delivered_seq"
            if up_to <= getattr(conversation, column):
                return None
            changes = {column: up_to, "updated_at": sa.func.now()}
            if read and up_to > conversation.visitor_delivered_seq:
                changes["visitor_delivered_seq"] = up_to  # read implies delivered
            await conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation.id)
                .values(**changes)
            )
            status, before = ("read", ("sent", "delivered")) if read else ("delivered", ("sent",))
            await conn.execute(
                messages.update()
                .where(
                    messages.c.conversation_id == conversation.id,
                    messages.c.sender_type == "agent",
                    messages.c.seq <= up_to,
                    messages.c.status.in_(before),
                )
                .values(status=status)
            )
            event: dict[str, Any] = {
                "type": MESSAGES_READ if read else MESSAGES_DELIVERED,
                "projectId": project_id,
                "conversationId": conversation.id,
                "visitorUid": visitor_uid,
                "upToSeq": up_to,
            }
            if read:
                event["by"] = "visitor"
            await record_events(conn, [(conversation.id, event)])
        return up_to

    async def update_context(
        self, *, project_id: int, visitor_uid: str, url: str, title: str | None
    ) -> int | None:
        """Append the page to the open conversation's history; its id, or None if none is open."""
        entry = {
            "url": url,
            "title": title,
            "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        }
        async with wrap_errors(), self._engine.begin() as conn:
            conversation = await self._lock_open(conn, project_id, visitor_uid)
            if conversation is None:
                return None
            history = [*list(conversation.page_history or []), entry][-PAGE_HISTORY_LIMIT:]
            await conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation.id)
                .values(page_history=history, updated_at=sa.func.now())
            )
            await record_events(
                conn,
                [
                    (
                        conversation.id,
                        {
                            "type": CONTEXT_UPDATED,
                            "projectId": project_id,
                            "conversationId": conversation.id,
                            "visitorUid": visitor_uid,
                            "currentUrl": url,
                            "currentTitle": title,
                        },
                    )
                ],
            )
        return int(conversation.id)

"""Read queries over conversations and their messages."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.errors import NotFound, wrap_errors
from persistence.models import agents, conversations, messages, visitors
from persistence.store import message_shape

HISTORY_LIMIT = 50  # messages
MAX_PAGE = 500  # messages per catch-up page


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConversationRoute:
    """Where a conversation's events go: its project room and its visitor's room."""

    id: int
    project_id: int
    visitor_uid: str
    status: str


def _messages_with_names() -> sa.Select[Any]:
    return (
        sa.select(messages, visitors.c.uid.label("visitor_uid"), agents.c.display_name)
        .join(conversations, conversations.c.id == messages.c.conversation_id)
        .join(visitors, visitors.c.id == conversations.c.visitor_id)
        .outerjoin(agents, agents.c.id == messages.c.agent_id)
    )


def _shape(row: Any) -> dict[str, Any]:
    return message_shape(row, visitor_uid=row.visitor_uid, agent_name=row.display_name)


class History:
    """What a client asks for when it (re)connects or scrolls."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    async def visitor_history(
        self,
        *,
        project_id: int,
        visitor_uid: str,
        after_seq: int | None = None,
        limit: int = HISTORY_LIMIT,
    ) -> list[dict[str, Any]]:
        """The visitor's open conversation, oldest first.

        Without ``after_seq``: its last ``limit`` messages. With it: everything
        after that seq (up to :data:`MAX_PAGE`), for a widget catching up.
        """
        query = _messages_with_names().where(
            visitors.c.project_id == project_id,
            visitors.c.uid == visitor_uid,
            conversations.c.status == "open",
        )
        if after_seq is not None:
            query = query.where(messages.c.seq > after_seq).order_by(messages.c.seq).limit(MAX_PAGE)
        else:
            query = query.order_by(messages.c.seq.desc()).limit(limit)
        async with wrap_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if after_seq is None:
            rows = list(reversed(rows))
        return [_shape(row) for row in rows]

    async def messages(
        self,
        conversation_id: int,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int = HISTORY_LIMIT,
    ) -> list[dict[str, Any]]:
        """A page of one conversation, ordered by seq.

        ``after_seq`` pages forward (catch-up); ``before_seq`` pages backward
        (scrolling up) and still returns the page oldest first.
        """
        limit = max(1, min(limit, MAX_PAGE))
        query = _messages_with_names().where(messages.c.conversation_id == conversation_id)
        if after_seq is not None:
            query = query.where(messages.c.seq > after_seq)
        if before_seq is not None:
            query = query.where(messages.c.seq < before_seq)
        backwards = before_seq is not None and after_seq is None
        order = messages.c.seq.desc() if backwards else messages.c.seq
        async with wrap_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(order).limit(limit))).all()
        if backwards:
            rows = list(reversed(rows))
        return [_shape(row) for row in rows]

    async def route(self, conversation_id: int) -> ConversationRoute:
        query = (
            sa.select(
                conversations.c.id,
                conversations.c.project_id,
                conversations.c.status,
                visitors.c.uid,
            )
            .join(visitors, visitors.c.id == conversations.c.visitor_id)
            .where(conversations.c.id == conversation_id)
        )
        async with wrap_errors(), self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        if row is None:
            raise NotFound(f"conversation {conversation_id} does not exist")
        return ConversationRoute(
            id=row.id, project_id=row.project_id, visitor_uid=row.uid, status=row.status
        )

    async def open_conversation(
        self, *, project_id: int, visitor_uid: str
    ) -> ConversationRoute | None:
        """The visitor's open conversation, or None before their first message."""
        query = (
            sa.select(conversations.c.id)
            .join(visitors, visitors.c.id == conversations.c.visitor_id)
            .where(
                visitors.c.project_id == project_id,
                visitors.c.uid == visitor_uid,
                conversations.c.status == "open",
            )
        )
        async with wrap_errors(), self._engine.connect() as conn:
            found = (await conn.execute(query)).scalar_one_or_none()
        if found is None:
            return None
        return ConversationRoute(
            id=found, project_id=project_id, visitor_uid=visitor_uid, status="open"
        )

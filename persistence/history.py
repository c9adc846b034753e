"""Read queries over stored messages."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.errors import wrap_errors
from persistence.models import conversations, messages, visitors
from persistence.store import message_shape

HISTORY_LIMIT = 50  # messages


class History:
    """What a client asks for when it (re)connects."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    async def visitor_history(
        self, *, project_id: int, visitor_uid: str, limit: int = HISTORY_LIMIT
    ) -> list[dict[str, Any]]:
        """The last ``limit`` messages of the visitor's open conversation, oldest first."""
        latest = (
            sa.select(messages)
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .join(visitors, visitors.c.id == conversations.c.visitor_id)
            .where(
                visitors.c.project_id == project_id,
                visitors.c.uid == visitor_uid,
                conversations.c.status == "open",
            )
            .order_by(messages.c.seq.desc())
            .limit(limit)
        )
        async with wrap_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(latest)).all()
        return [message_shape(row, visitor_uid=visitor_uid) for row in reversed(rows)]

"""The message store: append a batch of messages idempotently, in one transaction.

For every batch the store finds or creates each visitor and its open
conversation, inserts the new messages with the conversation's next gapless
``seq``, updates the conversation summary and writes one outbox row per newly
stored message, then NOTIFYs the relay. A redelivered message (same
conversation and tempId) is recognised and stores nothing, not even an outbox row.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from persistence.errors import wrap_errors
from persistence.models import conversations, messages, outbox, projects, visitors

OUTBOX_CHANNEL = "parley_outbox"  # the NOTIFY channel the relay LISTENs on
SNIPPET_LENGTH = 120  # characters
MESSAGE_CREATED = "message.created"


@dataclasses.dataclass(frozen=True, kw_only=True)
class IncomingMessage:
    """A visitor's message as the persistence agent hands it to the store."""

    project_id: int
    visitor_uid: str
    temp_id: str
    content: str
    session_metadata: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class AppendResult:
    stored: list[dict[str, Any]]  # the message shape, in the order stored
    duplicates: int  # messages that were already stored
    unknown_project: list[IncomingMessage]  # messages whose project does not exist


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def message_shape(row: Any, *, visitor_uid: str) -> dict[str, Any]:
    """The message as clients see it (``finalMessage``, ``newMessage``, history)."""
    return {
        "id": row.id,
        "conversationId": row.conversation_id,
        "projectId": row.project_id,
        "visitorUid": visitor_uid,
        "seq": row.seq,
        "content": row.content,
        "fromCustomer": row.from_customer,
        "senderType": row.sender_type,
        "status": row.status,
        "tempId": str(row.temp_id),
        "createdAt": iso(row.created_at),
    }


class MessageStore:
    """Writes messages; see the module docstring for the transaction it runs."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(self, batch: Sequence[IncomingMessage]) -> AppendResult:
        if not batch:
            return AppendResult(stored=[], duplicates=0, unknown_project=[])
        async with wrap_errors(), self._engine.begin() as conn:
            known = await self._known_projects(conn, {m.project_id for m in batch})
            groups: dict[tuple[int, str], list[IncomingMessage]] = {}
            unknown: list[IncomingMessage] = []
            for message in batch:
                if message.project_id not in known:
                    unknown.append(message)
                else:
                    groups.setdefault((message.project_id, message.visitor_uid), []).append(message)
            stored: list[dict[str, Any]] = []
            duplicates = 0
            # A fixed lock order keeps two workers that share visitors from deadlocking.
            for (project_id, visitor_uid), group in sorted(groups.items()):
                added, dupes = await self._append_visitor(conn, project_id, visitor_uid, group)
                stored.extend(added)
                duplicates += dupes
            if stored:
                # Delivered at commit, so the relay never wakes before the rows are visible.
                await conn.execute(sa.select(sa.func.pg_notify(OUTBOX_CHANNEL, "")))
        return AppendResult(stored=stored, duplicates=duplicates, unknown_project=unknown)

    async def _known_projects(self, conn: AsyncConnection, ids: set[int]) -> set[int]:
        rows = await conn.execute(sa.select(projects.c.id).where(projects.c.id.in_(ids)))
        return {row.id for row in rows}

    async def _append_visitor(
        self,
        conn: AsyncConnection,
        project_id: int,
        visitor_uid: str,
        group: list[IncomingMessage],
    ) -> tuple[list[dict[str, Any]], int]:
        visitor_id = (
            await conn.execute(
                insert(visitors)
                .values(project_id=project_id, uid=visitor_uid)
                .on_conflict_do_update(
                    index_elements=[visitors.c.project_id, visitors.c.uid],
                    set_={"last_seen_at": sa.func.now()},
                )
                .returning(visitors.c.id)
            )
        ).scalar_one()
        conversation = await self._lock_open_conversation(conn, project_id, visitor_id)

        # The conversation row is locked, so nobody else inserts here until we commit:
        # the pre-check is exact. Were it not, the unique keys would abort the whole
        # transaction (and the agent retries it) rather than leave a gap in seq.
        wanted = list(dict.fromkeys(m.temp_id for m in group))
        existing = set(
            (
                await conn.execute(
                    sa.select(messages.c.temp_id).where(
                        messages.c.conversation_id == conversation.id,
                        messages.c.temp_id.in_(wanted),
                    )
                )
            ).scalars()
        )
        fresh: list[IncomingMessage] = []
        seen = set(existing)
        for message in group:
            if message.temp_id not in seen:
                seen.add(message.temp_id)
                fresh.append(message)
        duplicates = len(group) - len(fresh)
        if not fresh:
            return [], duplicates

        rows = (
            await conn.execute(
                insert(messages)
                .values(
                    [
                        {
                            "conversation_id": conversation.id,
                            "project_id": project_id,
                            "seq": conversation.last_seq + offset,
                            "temp_id": message.temp_id,
                            "content": message.content,
                            "sender_type": "visitor",
                            "from_customer": True,
                            "status": "sent",
                            "created_at": sa.func.clock_timestamp(),
                        }
                        for offset, message in enumerate(fresh, start=1)
                    ]
                )
                .returning(*messages.c)
            )
        ).all()
        rows = sorted(rows, key=lambda row: row.seq)
        shapes = [message_shape(row, visitor_uid=visitor_uid) for row in rows]
        last = rows[-1]
        metadata = next(
            (m.session_metadata for m in reversed(fresh) if m.session_metadata is not None),
            None,
        )
        changes: dict[str, Any] = {
            "last_seq": last.seq,
            "last_message_id": last.id,
            "last_message_at": last.created_at,
            "last_message_snippet": last.content[:SNIPPET_LENGTH],
            "unread_count": conversations.c.unread_count + len(rows),
            "updated_at": sa.func.now(),
        }
        if metadata is not None:
            changes["session_metadata"] = metadata
        await conn.execute(
            conversations.update().where(conversations.c.id == conversation.id).values(**changes)
        )
        await conn.execute(
            outbox.insert(),
            [
                {
                    "conversation_id": conversation.id,
                    "event_type": MESSAGE_CREATED,
                    "payload": {"type": MESSAGE_CREATED, "message": shape},
                }
                for shape in shapes
            ],
        )
        return shapes, duplicates

    async def _lock_open_conversation(
        self, conn: AsyncConnection, project_id: int, visitor_id: int
    ) -> Any:
        select_open = (
            sa.select(conversations.c.id, conversations.c.last_seq)
            .where(conversations.c.visitor_id == visitor_id, conversations.c.status == "open")
            .with_for_update()
        )
        row = (await conn.execute(select_open)).one_or_none()
        if row is not None:
            return row
        created = (
            await conn.execute(
                insert(conversations)
                .values(project_id=project_id, visitor_id=visitor_id, status="open")
                .on_conflict_do_nothing(
                    index_elements=[conversations.c.visitor_id],
                    index_where=sa.text("status = 'open'"),
                )
                .returning(conversations.c.id, conversations.c.last_seq)
            )
        ).one_or_none()
        if created is not None:
            return created
        # Another transaction created it between our SELECT and INSERT: lock theirs.
        return (await conn.execute(select_open)).one()

"""The message store: append a batch of messages idempotently, in one transaction.

For every batch the store finds or creates each visitor and its open
conversation, inserts the new messages with the conversation's next gapless
``seq``, updates the conversation summary and writes one outbox row per newly
stored message, then NOTIFYs the relay. A redelivered message (same
conversation and tempId) is recognised and stores nothing, not even an outbox row.

Every step is one set-based statement over the whole batch (arrays in, rows
out), so a batch costs the same eight round trips whether it holds one visitor
or two hundred; the statements' text never changes, so they stay prepared.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from persistence.errors import wrap_errors
from persistence.outbox import MESSAGE_CREATED, OUTBOX_CHANNEL

SNIPPET_LENGTH = 120  # characters

KNOWN_PROJECTS = sa.text("SELECT id FROM projects WHERE id = ANY(CAST(:ids AS bigint[]))")

UPSERT_VISITORS = sa.text(
    """
    INSERT INTO visitors (project_id, uid)
    SELECT * FROM unnest(CAST(:project_ids AS bigint[]), CAST(:uids AS text[]))
    ON CONFLICT (project_id, uid) DO UPDATE SET last_seen_at = now()
    RETURNING id, project_id, uid
    """
)

# Locked in id order, so two workers sharing visitors cannot deadlock; the lock
# also serialises seq assignment per conversation.
LOCK_OPEN_CONVERSATIONS = sa.text(
    """
    SELECT id, visitor_id, last_seq FROM conversations
    WHERE visitor_id = ANY(CAST(:visitor_ids AS bigint[])) AND status = 'open'
    ORDER BY id
    FOR UPDATE
    """
)

CREATE_OPEN_CONVERSATIONS = sa.text(
    """
    INSERT INTO conversations (project_id, visitor_id, status)
    SELECT project_id, visitor_id, 'open'
    FROM unnest(CAST(:project_ids AS bigint[]), CAST(:visitor_ids AS bigint[]))
        AS t(project_id, visitor_id)
    ON CONFLICT (visitor_id) WHERE status = 'open' DO NOTHING
    RETURNING id, visitor_id, last_seq
    """
)

# Replies name their conversation; it is locked like a visitor's (in id order).
LOCK_REPLY_CONVERSATIONS = sa.text(
    """
    SELECT c.id, c.project_id, c.last_seq, v.uid
    FROM conversations c JOIN visitors v ON v.id = c.visitor_id
    WHERE c.id = ANY(CAST(:ids AS bigint[]))
    ORDER BY c.id
    FOR UPDATE OF c
    """
)

AGENT_NAMES = sa.text("SELECT id, display_name FROM agents WHERE id = ANY(CAST(:ids AS bigint[]))")

EXISTING_MESSAGES = sa.text(
    """
    SELECT m.conversation_id, m.temp_id::text AS temp_id
    FROM messages m
    JOIN unnest(CAST(:conversation_ids AS bigint[]), CAST(:temp_ids AS uuid[]))
        AS t(conversation_id, temp_id)
      ON m.conversation_id = t.conversation_id AND m.temp_id = t.temp_id
    """
)

INSERT_MESSAGES = sa.text(
    """
    INSERT INTO messages (conversation_id, project_id, seq, temp_id, content,
                          sender_type, from_customer, agent_id, status, created_at)
    SELECT t.conversation_id, t.project_id, t.seq, t.temp_id, t.content,
           t.sender_type, t.sender_type = 'visitor', t.agent_id, 'sent', clock_timestamp()
    FROM unnest(CAST(:conversation_ids AS bigint[]), CAST(:project_ids AS bigint[]),
                CAST(:seqs AS integer[]), CAST(:temp_ids AS uuid[]), CAST(:contents AS text[]),
                CAST(:sender_types AS text[]), CAST(:agent_ids AS bigint[]))
        WITH ORDINALITY
        AS t(conversation_id, project_id, seq, temp_id, content, sender_type, agent_id, ord)
    ORDER BY t.ord
    RETURNING id, conversation_id, project_id, seq, temp_id::text AS temp_id, content,
              sender_type, from_customer, agent_id, status, created_at
    """
)

UPDATE_CONVERSATIONS = sa.text(
    """
    UPDATE conversations c
    SET last_seq = u.last_seq,
        last_message_id = m.id,
        last_message_at = m.created_at,
        last_message_snippet = left(m.content, :snippet_length),
        unread_count = c.unread_count + u.unread,
        session_metadata = COALESCE(CAST(u.metadata AS jsonb), c.session_metadata),
        updated_at = now()
    FROM unnest(CAST(:ids AS bigint[]), CAST(:last_seqs AS integer[]),
                CAST(:message_ids AS bigint[]), CAST(:unread AS integer[]),
                CAST(:metadata AS text[]))
        AS u(id, last_seq, message_id, unread, metadata)
    JOIN messages m ON m.id = u.message_id
    WHERE c.id = u.id
    """
)

# Rows are fed in seq order, so outbox ids follow seq within a conversation.
INSERT_OUTBOX = sa.text(
    """
    INSERT INTO outbox (conversation_id, event_type, payload)
    SELECT t.conversation_id, :event_type, CAST(t.payload AS jsonb)
    FROM unnest(CAST(:conversation_ids AS bigint[]), CAST(:payloads AS text[]))
        WITH ORDINALITY AS t(conversation_id, payload, ord)
    ORDER BY t.ord
    """
)

NOTIFY = sa.text("SELECT pg_notify(:channel, '')")


@dataclasses.dataclass(frozen=True, kw_only=True)
class IncomingMessage:
    """A message as the persistence agent hands it to the store.

    A visitor's message finds its conversation by project and visitor; an agent's
    reply (``sender_type="agent"``) names its conversation and agent.
    """

    project_id: int
    visitor_uid: str
    temp_id: str
    content: str
    session_metadata: dict[str, Any] | None = None
    sender_type: str = "visitor"
    conversation_id: int | None = None
    agent_id: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class AppendResult:
    stored: list[dict[str, Any]]  # the message shape, in the order stored
    duplicates: int  # messages that were already stored
    rejected: list[tuple[IncomingMessage, str]]  # messages that cannot be stored, and why


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def message_shape(row: Any, *, visitor_uid: str, agent_name: str | None = None) -> dict[str, Any]:
    """The message as clients see it (``finalMessage``, ``newMessage``, history).

    Agent replies also carry ``agentId`` and ``agentName``.
    """
    shape = {
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
    if row.sender_type == "agent":
        shape["agentId"] = row.agent_id
        shape["agentName"] = agent_name
    return shape


@dataclasses.dataclass
class _Conversation:
    id: int
    project_id: int
    visitor_uid: str
    last_seq: int
    fresh: list[IncomingMessage] = dataclasses.field(default_factory=list)

    def accepts(self, message: IncomingMessage) -> bool:
        return self.project_id == message.project_id and self.visitor_uid == message.visitor_uid


class MessageStore:
    """Writes messages; see the module docstring for the transaction it runs."""

    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(self, batch: Sequence[IncomingMessage]) -> AppendResult:
        if not batch:
            return AppendResult(stored=[], duplicates=0, rejected=[])
        async with wrap_errors(), self._engine.begin() as conn:
            known = set(
                (
                    await conn.execute(
                        KNOWN_PROJECTS, {"ids": sorted({m.project_id for m in batch})}
                    )
                ).scalars()
            )
            rejected = [
                (m, f"project {m.project_id} does not exist")
                for m in batch
                if m.project_id not in known
            ]
            accepted = [m for m in batch if m.project_id in known]
            visitor_messages = [m for m in accepted if m.sender_type == "visitor"]
            replies = [m for m in accepted if m.sender_type == "agent"]
            by_visitor = await self._open_conversations(conn, visitor_messages)
            by_id = await self._reply_conversations(conn, replies)
            names = await self._agent_names(conn, replies)
            placed: list[tuple[IncomingMessage, _Conversation]] = []
            for message in accepted:
                if message.sender_type == "visitor":
                    placed.append((message, by_visitor[(message.project_id, message.visitor_uid)]))
                    continue
                conversation = by_id.get(message.conversation_id or 0)
                if conversation is None or not conversation.accepts(message):
                    rejected.append((message, f"conversation {message.conversation_id} not found"))
                elif message.agent_id not in names:
                    rejected.append((message, f"agent {message.agent_id} does not exist"))
                else:
                    placed.append((message, conversation))
            duplicates = await self._pick_fresh(conn, placed)
            touched = list({c.id: c for _, c in placed}.values())
            stored = await self._insert(conn, touched, names)
            if stored:
                # Delivered at commit, so the relay never wakes before the rows are visible.
                await conn.execute(NOTIFY, {"channel": OUTBOX_CHANNEL})
        return AppendResult(stored=stored, duplicates=duplicates, rejected=rejected)

    async def _reply_conversations(
        self, conn: AsyncConnection, replies: list[IncomingMessage]
    ) -> dict[int, _Conversation]:
        if not replies:
            return {}
        ids = sorted({m.conversation_id for m in replies if m.conversation_id is not None})
        rows = await conn.execute(LOCK_REPLY_CONVERSATIONS, {"ids": ids})
        return {
            row.id: _Conversation(
                id=row.id, project_id=row.project_id, visitor_uid=row.uid, last_seq=row.last_seq
            )
            for row in rows
        }

    async def _agent_names(
        self, conn: AsyncConnection, replies: list[IncomingMessage]
    ) -> dict[int | None, str]:
        if not replies:
            return {}
        ids = sorted({m.agent_id for m in replies if m.agent_id is not None})
        return {row.id: row.display_name for row in await conn.execute(AGENT_NAMES, {"ids": ids})}

    async def _open_conversations(
        self, conn: AsyncConnection, messages: list[IncomingMessage]
    ) -> dict[tuple[int, str], _Conversation]:
        """Upsert the visitors and lock (creating where missing) their open conversations."""
        if not messages:
            return {}
        keys = sorted({(m.project_id, m.visitor_uid) for m in messages})
        visitors = (
            await conn.execute(
                UPSERT_VISITORS,
                {"project_ids": [k[0] for k in keys], "uids": [k[1] for k in keys]},
            )
        ).all()
        visitor_key = {row.id: (row.project_id, row.uid) for row in visitors}
        visitor_ids = sorted(visitor_key)
        found = {
            row.visitor_id: row
            for row in await conn.execute(LOCK_OPEN_CONVERSATIONS, {"visitor_ids": visitor_ids})
        }
        missing = [v for v in visitor_ids if v not in found]
        if missing:
            created = await conn.execute(
                CREATE_OPEN_CONVERSATIONS,
                {"project_ids": [visitor_key[v][0] for v in missing], "visitor_ids": missing},
            )
            found.update({row.visitor_id: row for row in created})
            raced = [v for v in missing if v not in found]
            if raced:
                # Another transaction created these between our SELECT and INSERT.
                again = await conn.execute(LOCK_OPEN_CONVERSATIONS, {"visitor_ids": raced})
                found.update({row.visitor_id: row for row in again})
        return {
            visitor_key[visitor_id]: _Conversation(
                id=row.id,
                project_id=visitor_key[visitor_id][0],
                visitor_uid=visitor_key[visitor_id][1],
                last_seq=row.last_seq,
            )
            for visitor_id, row in found.items()
        }

    async def _pick_fresh(
        self, conn: AsyncConnection, placed: list[tuple[IncomingMessage, _Conversation]]
    ) -> int:
        """Queue each message not yet stored on its conversation; count the rest."""
        if not placed:
            return 0
        # The conversations are locked, so nobody else inserts into them until we
        # commit: this check is exact. Were it not, the unique keys would abort the
        # whole transaction (and the agent retries it) rather than leave a gap in seq.
        existing = {
            (row.conversation_id, row.temp_id)
            for row in await conn.execute(
                EXISTING_MESSAGES,
                {
                    "conversation_ids": [c.id for _, c in placed],
                    "temp_ids": [m.temp_id for m, _ in placed],
                },
            )
        }
        duplicates = 0
        for message, conversation in placed:
            key = (conversation.id, message.temp_id)
            if key in existing:
                duplicates += 1
                continue
            existing.add(key)
            conversation.fresh.append(message)
        return duplicates

    async def _insert(
        self,
        conn: AsyncConnection,
        conversations: list[_Conversation],
        names: dict[int | None, str],
    ) -> list[dict[str, Any]]:
        planned = [
            (conversation, conversation.last_seq + offset, message)
            for conversation in conversations
            for offset, message in enumerate(conversation.fresh, start=1)
        ]
        if not planned:
            return []
        rows = (
            await conn.execute(
                INSERT_MESSAGES,
                {
                    "conversation_ids": [c.id for c, _, _ in planned],
                    "project_ids": [c.project_id for c, _, _ in planned],
                    "seqs": [seq for _, seq, _ in planned],
                    "temp_ids": [m.temp_id for _, _, m in planned],
                    "contents": [m.content for _, _, m in planned],
                    "sender_types": [m.sender_type for _, _, m in planned],
                    "agent_ids": [m.agent_id for _, _, m in planned],
                },
            )
        ).all()
        by_id = {c.id: c for c in conversations}
        rows = sorted(rows, key=lambda row: (row.conversation_id, row.seq))
        shapes = [
            message_shape(
                row,
                visitor_uid=by_id[row.conversation_id].visitor_uid,
                agent_name=names.get(row.agent_id),
            )
            for row in rows
        ]
        last_row = {row.conversation_id: row for row in rows}
        touched = [c for c in conversations if c.fresh]
        await conn.execute(
            UPDATE_CONVERSATIONS,
            {
                "ids": [c.id for c in touched],
                "last_seqs": [last_row[c.id].seq for c in touched],
                "message_ids": [last_row[c.id].id for c in touched],
                "unread": [sum(m.sender_type == "visitor" for m in c.fresh) for c in touched],
                "metadata": [_latest_metadata(c.fresh) for c in touched],
                "snippet_length": SNIPPET_LENGTH,
            },
        )
        await conn.execute(
            INSERT_OUTBOX,
            {
                "conversation_ids": [shape["conversationId"] for shape in shapes],
                "payloads": [
                    json.dumps({"type": MESSAGE_CREATED, "message": shape}) for shape in shapes
                ],
                "event_type": MESSAGE_CREATED,
            },
        )
        return shapes


def _latest_metadata(messages: list[IncomingMessage]) -> str | None:
    for message in reversed(messages):
        if message.session_metadata is not None:
            return json.dumps(message.session_metadata)
    return None

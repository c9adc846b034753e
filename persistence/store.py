"""The message store: append a batch of messages idempotently, in one transaction.

For every batch the store finds or creates each visitor and its open
conversation, inserts the new messages with the conversation's next gapless
``seq``, updates the conversation summary and writes one outbox row per newly
stored message, then NOTIFYs the relay. A redelivered message (same
conversation and tempId) is recognised and stores nothing, not even an outbox row.

Every step is one set-based statement over the whole batch (arrays in, rows
out, see :mod:`persistence.batch_sql`), so a batch costs the same few round trips
whether it holds one visitor or two hundred.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from persistence.batch_sql import (
    AGENT_NAMES,
    CREATE_OPEN_CONVERSATIONS,
    EXISTING_MESSAGES,
    KNOWN_PROJECTS,
    LOCK_OPEN_CONVERSATIONS,
    LOCK_REPLY_CONVERSATIONS,
    STORE_MESSAGES,
    UPSERT_VISITORS,
)
from persistence.errors import wrap_write_errors
from persistence.outbox import MESSAGE_CREATED, OUTBOX_CHANNEL

SNIPPET_LENGTH = 120  # characters


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
    accepted_at: str | None = None  # when a gateway accepted it (ISO 8601), for latency


@dataclasses.dataclass(frozen=True, kw_only=True)
class AppendResult:
    stored_json: list[str]  # the message shapes as JSON text, in the order stored
    duplicates: int  # messages that were already stored
    rejected: list[tuple[IncomingMessage, str]]  # messages that cannot be stored, and why

    @functools.cached_property
    def stored(self) -> list[dict[str, Any]]:
        """The message shapes, decoded when asked for (the agent only counts them)."""
        return [json.loads(text) for text in self.stored_json]


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
        """Store the batch in one transaction, or raise one of the three write failures.

        :class:`~persistence.errors.DatabaseUnavailable`,
        :class:`~persistence.errors.TransientFailure` or
        :class:`~persistence.errors.DataRejected`: the caller decides whether to wait,
        retry or split the batch; nothing of a failed batch is stored.
        """
        if not batch:
            return AppendResult(stored_json=[], duplicates=0, rejected=[])
        async with wrap_write_errors(), self._engine.begin() as conn:
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
        return AppendResult(stored_json=stored, duplicates=duplicates, rejected=rejected)

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
    ) -> list[str]:
        """Write the fresh messages and their effects; their shapes as JSON text."""
        planned = [
            (conversation, conversation.last_seq + offset, message)
            for conversation in conversations
            for offset, message in enumerate(conversation.fresh, start=1)
        ]
        if not planned:
            return []
        touched = [c for c in conversations if c.fresh]
        rows = await conn.execute(
            STORE_MESSAGES,
            {
                "conversation_ids": [c.id for c, _, _ in planned],
                "project_ids": [c.project_id for c, _, _ in planned],
                "seqs": [seq for _, seq, _ in planned],
                "temp_ids": [m.temp_id for _, _, m in planned],
                "contents": [m.content for _, _, m in planned],
                "sender_types": [m.sender_type for _, _, m in planned],
                "agent_ids": [m.agent_id for _, _, m in planned],
                "visitor_uids": [c.visitor_uid for c, _, _ in planned],
                "agent_names": [names.get(m.agent_id) for _, _, m in planned],
                # Beside the message in the outbox payload, not in it: clients never
                # see it; the gateway measures acceptance -> emission with it.
                "accepted_ats": [m.accepted_at for _, _, m in planned],
                "ids": [c.id for c in touched],
                "last_seqs": [c.last_seq + len(c.fresh) for c in touched],
                "unread": [sum(m.sender_type == "visitor" for m in c.fresh) for c in touched],
                "metadata": [_latest_metadata(c.fresh) for c in touched],
                "snippet_length": SNIPPET_LENGTH,
                "channel": OUTBOX_CHANNEL,
                "event_type": MESSAGE_CREATED,
            },
        )
        return list(rows.scalars())


def _latest_metadata(messages: list[IncomingMessage]) -> str | None:
    for message in reversed(messages):
        if message.session_metadata is not None:
            return json.dumps(message.session_metadata)
    return None

"""Conversations as the dashboard sees them: the list, one visitor, read/status changes, sync.

Every change here bumps ``conversations.updated_at`` (the message store does the
same for every stored message), so "what changed since T" is one indexed range
scan; see :meth:`Conversations.sync` for why its cursor lags the clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.catchup import Planned, SyncLimits, fill_answer
from persistence.cursors import PageCursor, SyncCursor
from persistence.errors import Conflict, NotFound, wrap_errors
from persistence.models import conversations, messages, visitors
from persistence.outbox import CONVERSATION_UPDATED, MESSAGES_READ, record_events
from persistence.store import iso, message_shape

PAGE_LIMIT = 20  # conversations per page unless the client asks otherwise
MAX_PAGE_LIMIT = 100  # conversations per page
VISITOR_CONVERSATIONS = 100  # conversations listed on a visitor's page, newest first
# A commit can become visible after a later-started one, and updated_at is its
# transaction's start time, so a sync cursor of "now" would skip late commits.
SYNC_OVERLAP = 10.0  # seconds the next sync looks back before this one's start
SYNC_HISTORY = 50  # messages sent for a conversation the client does not list
# A catch-up without ``since`` walks every conversation, newest first.
SYNC_WALK_START = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
STATUSES = ("open", "closed")

# seq is gapless per conversation, so "after seq lo, at most hi" is a plain range.
SYNC_MESSAGES = sa.text(
    """
    SELECT m.id, m.conversation_id, m.project_id, m.seq, m.temp_id, m.content,
           m.sender_type, m.from_customer, m.agent_id, m.status, m.created_at,
           a.display_name
    FROM unnest(CAST(:ids AS bigint[]), CAST(:los AS integer[]), CAST(:his AS integer[]))
        AS r(conversation_id, lo, hi)
    JOIN messages m ON m.conversation_id = r.conversation_id AND m.seq > r.lo AND m.seq <= r.hi
    LEFT JOIN agents a ON a.id = m.agent_id
    ORDER BY m.conversation_id, m.seq
    """
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConversationPage:
    items: list[dict[str, Any]]
    next_cursor: str | None  # None on the last page


def _items() -> sa.Select[Any]:
    return sa.select(conversations, visitors.c.uid.label("visitor_uid")).join(
        visitors, visitors.c.id == conversations.c.visitor_id
    )


def _newest_first(query: sa.Select[Any]) -> sa.Select[Any]:
    return query.order_by(conversations.c.updated_at.desc(), conversations.c.id.desc())


def _item(row: Any, visitor_uid: str | None = None) -> dict[str, Any]:
    """A conversation in the dashboard's list (and in sync, and after a PATCH)."""
    return {
        "id": row.id,
        "visitor": {"uid": row.visitor_uid if visitor_uid is None else visitor_uid},
        "status": row.status,
        "unreadCount": row.unread_count,
        "lastMessageSnippet": row.last_message_snippet,
        "lastMessageAt": iso(row.last_message_at) if row.last_message_at else None,
        "lastSeq": row.last_seq,
        # Receipts, so a dashboard that was away can redraw ticks it already showed.
        "visitorDeliveredSeq": row.visitor_delivered_seq,
        "visitorReadSeq": row.visitor_read_seq,
        "agentReadSeq": row.agent_read_seq,
        "updatedAt": iso(row.updated_at),
    }


def _session_metadata(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    return {
        "referrer": value.get("referrer"),
        "landingPage": value.get("landingPage"),
        "urlHistory": value.get("urlHistory") or [],
    }


class Conversations:
    """Reads and agent-side changes of a project's conversations."""

    def __init__(self, *, engine: AsyncEngine, sync_limits: SyncLimits | None = None) -> None:
        self._engine = engine
        self._sync_limits = sync_limits or SyncLimits()

    async def page(
        self,
        *,
        project_id: int,
        status: str | None = None,
        cursor: PageCursor | None = None,
        limit: int = PAGE_LIMIT,
    ) -> ConversationPage:
        """Newest activity first; pass ``next_cursor`` back for the following page."""
        limit = max(1, min(limit, MAX_PAGE_LIMIT))
        query = _items().where(conversations.c.project_id == project_id)
        if status is not None:
            query = query.where(conversations.c.status == status)
        if cursor is not None:
            query = query.where(
                sa.tuple_(conversations.c.updated_at, conversations.c.id)
                < sa.tuple_(
                    sa.literal(cursor.updated_at, conversations.c.updated_at.type),
                    sa.literal(cursor.id, conversations.c.id.type),
                )
            )
        # One row more than asked says whether another page exists.
        async with wrap_errors(), self._engine.connect() as conn:
            rows = (await conn.execute(_newest_first(query).limit(limit + 1))).all()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = (
            PageCursor(updated_at=rows[-1].updated_at, id=rows[-1].id).encode() if more else None
        )
        return ConversationPage(items=[_item(row) for row in rows], next_cursor=next_cursor)

    async def get(self, *, project_id: int, conversation_id: int) -> dict[str, Any]:
        """One conversation of the project; :class:`NotFound` if it is another project's."""
        query = _items().where(
            conversations.c.id == conversation_id, conversations.c.project_id == project_id
        )
        async with wrap_errors(), self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        if row is None:
            raise NotFound(f"conversation {conversation_id} does not exist in this project")
        return _item(row)

    async def update(
        self,
        *,
        project_id: int,
        conversation_id: int,
        read: bool = False,
        status: str | None = None,
    ) -> dict[str, Any]:
        """Mark it read by the agents and/or set its status, with outbox events, atomically.

        Reading sets ``unread_count = 0`` and ``agent_read_seq = last_seq`` and marks
        the visitor's messages up to ``last_seq`` read. Reopening while the visitor
        has another open conversation raises :class:`Conflict`. A request that
        changes nothing writes nothing and records no event.
        """
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        query = (
            _items()
            .where(conversations.c.id == conversation_id, conversations.c.project_id == project_id)
            .with_for_update(of=conversations)
        )
        async with wrap_errors(), self._engine.begin() as conn:
            row = (await conn.execute(query)).one_or_none()
            if row is None:
                raise NotFound(f"conversation {conversation_id} does not exist in this project")
            values: dict[str, Any] = {}
            fields: dict[str, Any] = {}
            if status is not None and status != row.status:
                if status == "open":
                    other = await conn.scalar(
                        sa.select(conversations.c.id).where(
                            conversations.c.visitor_id == row.visitor_id,
                            conversations.c.status == "open",
                        )
                    )
                    if other is not None:
                        raise Conflict(f"the visitor already has an open conversation ({other})")
                values["status"] = fields["status"] = status
            newly_read = read and (row.unread_count != 0 or row.agent_read_seq < row.last_seq)
            if newly_read:
                values.update(unread_count=0, agent_read_seq=row.last_seq)
                fields["unreadCount"] = 0
                await conn.execute(
                    messages.update()
                    .where(
                        messages.c.conversation_id == conversation_id,
                        messages.c.sender_type == "visitor",
                        messages.c.seq <= row.last_seq,
                        messages.c.status != "read",
                    )
                    .values(status="read")
                )
            if not values:
                return _item(row)
            try:
                changed = (
                    await conn.execute(
                        conversations.update()
                        .where(conversations.c.id == conversation_id)
                        .values(**values, updated_at=sa.func.now())
                        .returning(conversations)
                    )
                ).one()
            except sqlalchemy.exc.IntegrityError:
                # The store opened a new conversation for this visitor after our check.
                raise Conflict("the visitor already has an open conversation") from None
            route = {
                "projectId": project_id,
                "conversationId": conversation_id,
                "visitorUid": row.visitor_uid,
            }
            events = [{"type": CONVERSATION_UPDATED, **route, "fields": fields}]
            if newly_read:
                events.append(
                    {"type": MESSAGES_READ, **route, "upToSeq": row.last_seq, "by": "agent"}
                )
            await record_events(conn, [(conversation_id, event) for event in events])
        return _item(changed, row.visitor_uid)

    async def visitor(self, *, project_id: int, visitor_uid: str) -> dict[str, Any]:
        """A visitor's details, with the context of its open (else latest) conversation."""
        async with wrap_errors(), self._engine.connect() as conn:
            person = (
                await conn.execute(
                    sa.select(visitors).where(
                        visitors.c.project_id == project_id, visitors.c.uid == visitor_uid
                    )
                )
            ).one_or_none()
            if person is None:
                raise NotFound(f"visitor {visitor_uid!r} does not exist in this project")
            mine = sa.select(conversations).where(conversations.c.visitor_id == person.id)
            current = (
                await conn.execute(
                    _newest_first(mine.order_by((conversations.c.status == "open").desc())).limit(1)
                )
            ).one_or_none()
            listed = (await conn.execute(_newest_first(mine).limit(VISITOR_CONVERSATIONS))).all()
        return {
            "uid": person.uid,
            "projectId": person.project_id,
            "createdAt": iso(person.created_at),
            "lastSeenAt": iso(person.last_seen_at),
            "sessionMetadata": _session_metadata(current.session_metadata) if current else None,
            "pageHistory": list(current.page_history or []) if current else [],
            "conversations": [
                {
                    "id": row.id,
                    "status": row.status,
                    "lastSeq": row.last_seq,
                    "updatedAt": iso(row.updated_at),
                }
                for row in listed
            ],
        }

    async def sync(
        self,
        *,
        project_id: int,
        since: SyncCursor | None = None,
        last_seqs: Mapping[int, int] | None = None,
    ) -> dict[str, Any]:
        """One answer of a paged catch-up: what changed at or after ``since``.

        Returns ``{conversations, messages, cursor, hasMore}``: conversations by
        descending id (the newest first), and for each its messages after
        ``last_seqs[id]`` (its last :data:`SYNC_HISTORY` when the client does not
        list it), oldest first.
        Each answer stays within :class:`SyncLimits`. While ``hasMore`` is true,
        call again with ``cursor`` as ``since`` and the same ``last_seqs``: the
        cursor then holds the keyset position and, when a conversation's
        messages were cut, that conversation and the seq reached, so the next
        answer finishes it first. Without ``since`` the walk covers every
        conversation of the project.

        The last answer's cursor is the first answer's start minus
        :data:`SYNC_OVERLAP`, so the next catch-up repeats what changed in that
        window (and whatever changed while paging): clients de-duplicate by
        conversation id and message id.
        """
        known = last_seqs or {}
        limits = self._sync_limits
        resume = since.resume if since is not None else None
        # The walk goes by id, which never moves. Ordered by updated_at, a
        # conversation that changed while the walk paged would jump ahead of the
        # walk's position and be skipped: its new messages then arrive live on top
        # of a hole that no answer fills.
        query = _items().where(conversations.c.project_id == project_id)
        if since is not None:
            query = query.where(conversations.c.updated_at >= since.since)
        if resume is not None:
            query = query.where(conversations.c.id < resume.id)
        query = query.order_by(conversations.c.id.desc())
        async with wrap_errors(), self._engine.connect() as conn:
            # Read before the query, so the query's snapshot is at least as new.
            started = await conn.scalar(sa.select(sa.func.clock_timestamp()))
            plan: list[tuple[Any, int, int]] = []  # (conversation, after seq, up to seq)
            if resume is not None and resume.partial_id is not None:
                head = (
                    await conn.execute(
                        _items().where(
                            conversations.c.id == resume.partial_id,
                            conversations.c.project_id == project_id,
                        )
                    )
                ).one_or_none()
                if head is not None:
                    low = resume.partial_seq or 0
                    plan.append((head, low, min(head.last_seq, low + limits.messages)))
            room = limits.conversations - len(plan)
            rows = (await conn.execute(query.limit(room + 1))).all()
            more = len(rows) > room
            for row in rows[:room]:
                after = known.get(row.id)
                low = max(0, row.last_seq - SYNC_HISTORY if after is None else after)
                plan.append((row, low, min(row.last_seq, low + limits.messages)))
            found = (
                await conn.execute(
                    SYNC_MESSAGES,
                    {
                        "ids": [row.id for row, _, _ in plan],
                        "los": [low for _, low, _ in plan],
                        "his": [high for _, _, high in plan],
                    },
                )
            ).all()
        assert isinstance(started, dt.datetime)
        plan_uids = {row.id: row.visitor_uid for row, _, _ in plan}
        next_since = resume.next_since if resume else started - dt.timedelta(seconds=SYNC_OVERLAP)
        shaped: dict[int, list[dict[str, Any]]] = {}
        for message in found:
            visitor_uid = plan_uids[message.conversation_id]
            shaped.setdefault(message.conversation_id, []).append(
                message_shape(message, visitor_uid=visitor_uid, agent_name=message.display_name)
            )
        answer, cut = fill_answer(
            [
                Planned(
                    item=_item(row),
                    key=row.id,
                    after=low,
                    up_to=high,
                    last_seq=row.last_seq,
                    messages=shaped.get(row.id, []),
                )
                for row, low, high in plan
            ],
            limits=limits,
            resume=resume,
            more=more,
            next_since=next_since,
        )
        if cut is None:
            cursor = SyncCursor(since=next_since)
        else:
            cursor = SyncCursor(
                since=since.since if since is not None else SYNC_WALK_START, resume=cut
            )
        return {
            "conversations": answer.conversations,
            "messages": answer.messages,
            "cursor": cursor.encode(),
            "hasMore": cut is not None,
        }

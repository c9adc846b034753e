"""The SQL of one stored batch: set-based statements over arrays, one round trip each.

Their text never changes with the batch's size, so asyncpg keeps them prepared.
"""

from __future__ import annotations

import sqlalchemy as sa

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

# ``message_shape``'s ``createdAt`` (persistence.store.iso) in SQL: UTC, a "Z",
# and microseconds only when there are any, as Python's isoformat() writes them.
ISO_CREATED_AT = """
    to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
    || CASE WHEN extract(microseconds FROM m.created_at)::bigint % 1000000 = 0 THEN ''
            ELSE to_char(m.created_at AT TIME ZONE 'UTC', '.US') END
    || 'Z'
"""

# A whole batch's writes in one round trip: the messages, the conversation
# summaries, one outbox row per message and the NOTIFY (delivered at commit, so
# the relay never wakes before the rows are visible). The outbox payload is
# built here, as ``message_shape`` builds it in Python for history; the stored
# shapes come back as JSON text, in (conversation, seq) order. Data-modifying
# CTEs always run to completion, and the later ones read the messages through
# ``inserted`` (a statement does not see its own inserts in the table). Outbox
# rows are fed in seq order, so outbox ids follow seq within a conversation.
STORE_MESSAGES = sa.text(
    f"""
    WITH input AS (
        SELECT * FROM unnest(
            CAST(:conversation_ids AS bigint[]), CAST(:project_ids AS bigint[]),
            CAST(:seqs AS integer[]), CAST(:temp_ids AS uuid[]), CAST(:contents AS text[]),
            CAST(:sender_types AS text[]), CAST(:agent_ids AS bigint[]),
            CAST(:visitor_uids AS text[]), CAST(:agent_names AS text[]),
            CAST(:accepted_ats AS text[])
        ) WITH ORDINALITY AS t(conversation_id, project_id, seq, temp_id, content, sender_type,
                               agent_id, visitor_uid, agent_name, accepted_at, ord)
    ),
    inserted AS (
        INSERT INTO messages (conversation_id, project_id, seq, temp_id, content,
                              sender_type, from_customer, agent_id, status, created_at)
        SELECT conversation_id, project_id, seq, temp_id, content,
               sender_type, sender_type = 'visitor', agent_id, 'sent', clock_timestamp()
        FROM input
        ORDER BY ord
        RETURNING id, conversation_id, project_id, seq, temp_id, content,
                  sender_type, from_customer, agent_id, status, created_at
    ),
    shaped AS (
        SELECT m.id, m.conversation_id, m.seq, m.content, m.created_at, i.accepted_at,
               jsonb_build_object(
                   'id', m.id, 'conversationId', m.conversation_id,
                   'projectId', m.project_id, 'visitorUid', i.visitor_uid, 'seq', m.seq,
                   'content', m.content, 'fromCustomer', m.from_customer,
                   'senderType', m.sender_type, 'status', m.status,
                   'tempId', m.temp_id::text, 'createdAt', {ISO_CREATED_AT}
               ) || CASE WHEN m.sender_type = 'agent'
                         THEN jsonb_build_object('agentId', m.agent_id, 'agentName', i.agent_name)
                         ELSE '{{}}'::jsonb END AS message
        FROM inserted m
        JOIN input i ON i.conversation_id = m.conversation_id AND i.seq = m.seq
    ),
    summary AS (
        UPDATE conversations c
        SET last_seq = u.last_seq,
            last_message_id = m.id,
            last_message_at = m.created_at,
            last_message_snippet = left(m.content, :snippet_length),
            unread_count = c.unread_count + u.unread,
            session_metadata = COALESCE(CAST(u.metadata AS jsonb), c.session_metadata),
            updated_at = now()
        FROM unnest(CAST(:ids AS bigint[]), CAST(:last_seqs AS integer[]),
                    CAST(:unread AS integer[]), CAST(:metadata AS text[]))
            AS u(id, last_seq, unread, metadata)
        JOIN shaped m ON m.conversation_id = u.id AND m.seq = u.last_seq
        WHERE c.id = u.id
    ),
    recorded AS (
        INSERT INTO outbox (conversation_id, event_type, payload)
        SELECT conversation_id, CAST(:event_type AS text),
               jsonb_build_object(
                   'type', CAST(:event_type AS text), 'message', message,
                   'acceptedAt', accepted_at
               )
        FROM shaped
        ORDER BY conversation_id, seq
    )
    SELECT message::text AS message, (SELECT pg_notify(:channel, '')) AS notified
    FROM shaped
    ORDER BY conversation_id, seq
    """
)

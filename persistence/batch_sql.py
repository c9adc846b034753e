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

# The summary, the outbox rows and the NOTIFY in one round trip. Data-modifying
# CTEs always run to completion; the messages they join were inserted by the
# batch's previous statement. Outbox rows are fed in seq order, so outbox ids
# follow seq within a conversation. NOTIFY is delivered at commit.
SUMMARIZE_AND_RECORD = sa.text(
    """
    WITH summary AS (
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
        RETURNING c.id
    ),
    recorded AS (
        INSERT INTO outbox (conversation_id, event_type, payload)
        SELECT t.conversation_id, :event_type, CAST(t.payload AS jsonb)
        FROM unnest(CAST(:conversation_ids AS bigint[]), CAST(:payloads AS text[]))
            WITH ORDINALITY AS t(conversation_id, payload, ord)
        ORDER BY t.ord
        RETURNING id
    )
    SELECT (SELECT count(*) FROM summary) AS summarized,
           (SELECT count(*) FROM recorded) AS recorded,
           pg_notify(:channel, '')
    """
)

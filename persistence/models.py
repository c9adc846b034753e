"""The schema: SQLAlchemy Core tables, the single source the Alembic migrations must match."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

NOW = sa.text("now()")

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    # Empty means "any origin": the widget may be embedded anywhere.
    sa.Column("allowed_origins", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    # The key the site's backend signs visitor uids with (identity verification).
    sa.Column("identity_secret", sa.Text, nullable=True),
    sa.Column("require_identity", sa.Boolean, nullable=False, server_default=sa.false()),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("email", sa.Text, nullable=False, unique=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    # Tokens carry the version they were issued under; bumping it revokes them all.
    sa.Column("token_version", sa.Integer, nullable=False, server_default="0"),
)

project_members = sa.Table(
    "project_members",
    metadata,
    sa.Column(
        "project_id",
        sa.BigInteger,
        sa.ForeignKey("projects.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "agent_id",
        sa.BigInteger,
        sa.ForeignKey("agents.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
)

visitors = sa.Table(
    "visitors",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "project_id",
        sa.BigInteger,
        sa.ForeignKey("projects.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("uid", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.UniqueConstraint("project_id", "uid"),
)

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "project_id",
        sa.BigInteger,
        sa.ForeignKey("projects.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column(
        "visitor_id",
        sa.BigInteger,
        sa.ForeignKey("visitors.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("status", sa.Text, nullable=False, server_default="open"),
    # The last seq handed out; the next message gets last_seq + 1 (gapless).
    sa.Column("last_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_message_id", sa.BigInteger, nullable=True),
    sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_message_snippet", sa.Text, nullable=True),
    sa.Column("unread_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("session_metadata", pg.JSONB, nullable=True),
    # Pages the visitor went through while the widget was open, newest last (capped).
    sa.Column("page_history", pg.JSONB, nullable=False, server_default="[]"),
    # Receipts: the highest seq the agents have read (visitor messages), and the
    # highest agent-message seq the visitor's widget received and read.
    sa.Column("agent_read_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("visitor_delivered_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("visitor_read_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.CheckConstraint("status IN ('open', 'closed')", name="status"),
    sa.Index("ix_conversations_project_updated", "project_id", "updated_at"),
    # At most one open conversation per visitor: two workers racing to create one
    # cannot both win.
    sa.Index(
        "uq_conversations_open_visitor",
        "visitor_id",
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    ),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "conversation_id",
        sa.BigInteger,
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("project_id", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("temp_id", pg.UUID(as_uuid=False), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("sender_type", sa.Text, nullable=False),
    sa.Column("from_customer", sa.Boolean, nullable=False),
    sa.Column("agent_id", sa.BigInteger, sa.ForeignKey("agents.id"), nullable=True),
    sa.Column("status", sa.Text, nullable=False, server_default="sent"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.CheckConstraint("sender_type IN ('visitor', 'agent')", name="sender_type"),
    sa.CheckConstraint("status IN ('sent', 'delivered', 'read')", name="status"),
    # The idempotency key: a redelivered event finds its row and stores nothing.
    sa.UniqueConstraint("conversation_id", "temp_id"),
    sa.UniqueConstraint("conversation_id", "seq"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    # Events of one conversation are relayed in id order.
    sa.Column("conversation_id", sa.BigInteger, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("payload", pg.JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    # Parked rows failed to publish too often; they wait for `parley outbox retry`.
    sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_outbox_pending", "id", postgresql_where=sa.text("parked_at IS NULL")),
    sa.Index("ix_outbox_conversation", "conversation_id", "id"),
)

widget_settings = sa.Table(
    "widget_settings",
    metadata,
    sa.Column(
        "project_id",
        sa.BigInteger,
        sa.ForeignKey("projects.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # Only the values set with `parley project settings`; the rest keep their defaults,
    # so a default changed in code reaches every project that never set it.
    sa.Column("values", pg.JSONB, nullable=False, server_default="{}"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
)

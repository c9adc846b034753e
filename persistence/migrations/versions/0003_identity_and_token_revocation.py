"""identity verification secrets and agent token revocation

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 16:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("identity_secret", sa.Text(), nullable=True))
    op.add_column(
        "projects",
        sa.Column("require_identity", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column(
        "agents",
        sa.Column("token_version", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("agents", "token_version")
    op.drop_column("projects", "require_identity")
    op.drop_column("projects", "identity_secret")

"""Shared login state for several replicas: pending logins and the replay store.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "keyplane_login_pending",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("flow", sa.String(300), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_keyplane_login_pending_expires_at", "keyplane_login_pending", ["expires_at"])
    op.create_table(
        "keyplane_replay",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_keyplane_replay_expires_at", "keyplane_replay", ["expires_at"])


def downgrade() -> None:
    op.drop_table("keyplane_replay")
    op.drop_table("keyplane_login_pending")

"""The SCIM store as Keyplane created it before migrations (``metadata.create_all``).

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "keyplane_scim_resources",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("partition", sa.String(255), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_name", sa.String(1024)),
        sa.Column("external_id", sa.String(1024)),
        sa.Column("display_name", sa.String(1024)),
        sa.Column("label", sa.String(1024)),
        sa.Column("email", sa.String(1024)),
        sa.Column("active", sa.Boolean),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    for name, columns in {
        "ix_kp_scim_user_name": ["partition", "resource_type", "user_name"],
        "ix_kp_scim_external_id": ["partition", "resource_type", "external_id"],
        "ix_kp_scim_display_name": ["partition", "resource_type", "display_name"],
        "ix_kp_scim_email": ["partition", "email"],
        "ix_kp_scim_seq": ["partition", "resource_type", "seq"],
    }.items():
        op.create_index(name, "keyplane_scim_resources", columns)
    op.create_table(
        "keyplane_scim_unique",
        sa.Column("partition", sa.String(255), primary_key=True),
        sa.Column("urn", sa.String(512), primary_key=True),
        sa.Column("value", sa.String(1024), primary_key=True),
        sa.Column("resource_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_keyplane_scim_unique_resource_id", "keyplane_scim_unique", ["resource_id"])
    op.create_table(
        "keyplane_scim_members",
        sa.Column("partition", sa.String(255), primary_key=True),
        sa.Column("group_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), primary_key=True),
    )
    op.create_index("ix_kp_scim_members_user", "keyplane_scim_members", ["partition", "user_id", "group_id"])


def downgrade() -> None:
    op.drop_table("keyplane_scim_members")
    op.drop_table("keyplane_scim_unique")
    op.drop_table("keyplane_scim_resources")

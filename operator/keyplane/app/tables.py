"""The app's tables, in one SQLAlchemy :class:`MetaData`: the SCIM store and the shared login state.

Alembic revisions in ``keyplane/app/migrations`` create and upgrade them (see :mod:`keyplane.app.schema`);
a test checks that the revisions and these definitions agree.

* ``keyplane_scim_*``: the SCIM resources of every connection (``storage`` / ``scim_storage``).
* ``keyplane_login_pending``: logins started and not yet finished (SAML request ID, OIDC state, nonce and
  PKCE verifier), so that the callback may land on any replica (``login_state``).
* ``keyplane_replay``: assertion / ID-token identifiers already used, until they expire (``replay``).
"""

from __future__ import annotations

import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    select,
)

metadata = MetaData()

resources = Table(
    "keyplane_scim_resources",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("partition", String(255), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    # Creation order (monotonic nanoseconds): stable pagination even when clocks tie.
    Column("seq", BigInteger, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("last_modified", DateTime(timezone=True), nullable=False),
    Column("user_name", String(1024)),
    Column("external_id", String(1024)),
    Column("display_name", String(1024)),
    Column("label", String(1024)),
    Column("email", String(1024)),
    Column("active", Boolean),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("data", Text, nullable=False),
    Index("ix_kp_scim_user_name", "partition", "resource_type", "user_name"),
    Index("ix_kp_scim_external_id", "partition", "resource_type", "external_id"),
    Index("ix_kp_scim_display_name", "partition", "resource_type", "display_name"),
    Index("ix_kp_scim_email", "partition", "email"),
    Index("ix_kp_scim_seq", "partition", "resource_type", "seq"),
)

unique_values = Table(
    "keyplane_scim_unique",
    metadata,
    Column("partition", String(255), primary_key=True),
    Column("urn", String(512), primary_key=True),
    Column("value", String(1024), primary_key=True),
    Column("resource_id", String(64), nullable=False, index=True),
)

members = Table(
    "keyplane_scim_members",
    metadata,
    Column("partition", String(255), primary_key=True),
    Column("group_id", String(64), primary_key=True),
    Column("user_id", String(64), primary_key=True),
    # Covering, so that SQLite prefers it to the primary key for lookups by user.
    Index("ix_kp_scim_members_user", "partition", "user_id", "group_id"),
)


login_pending = Table(
    "keyplane_login_pending",
    metadata,
    # SHA-256 (hex) of the random handle the browser's signed cookie carries.
    Column("key", String(64), primary_key=True),
    # "saml:<idp>" or "oidc:<idp>": a handle started for one IdP is never accepted by another.
    Column("flow", String(300), nullable=False),
    Column("data", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

replay = Table(
    "keyplane_replay",
    metadata,
    # SHA-256 (hex) of the identifier ("saml:<idp>:<assertion ID>", "oidc:<idp>:<jti or token hash>").
    Column("key", String(64), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)


#: At most this many expired rows are deleted per new row (a bounded cost per login, and still no growth).
EXPIRED_BATCH = 500


def delete_expired(connection: Connection, table: Table, now: datetime.datetime) -> None:
    """Delete expired rows of ``login_pending`` or ``replay``.

    Rows another replica is deleting at the same moment are skipped (``FOR UPDATE SKIP LOCKED`` on
    PostgreSQL), so concurrent cleanups never wait for, or deadlock with, each other.
    """
    expired = (
        select(table.c.key)
        .where(table.c.expires_at <= now)
        .limit(EXPIRED_BATCH)
        .with_for_update(skip_locked=True)
    )
    connection.execute(delete(table).where(table.c.key.in_(expired.scalar_subquery())))

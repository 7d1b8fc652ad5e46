"""Create or upgrade the app's tables at start-up, under a lock, with Alembic.

Several replicas start together: only one of them migrates at a time, the others wait and then find the
schema current. The lock is PostgreSQL's transaction-level advisory lock (``pg_advisory_xact_lock``),
or on SQLite the write lock of a ``BEGIN IMMEDIATE`` transaction; the migration runs inside that
transaction (both have transactional DDL), so a replica killed mid-way leaves the schema as it was.

* An empty database gets the tables of :mod:`keyplane.app.tables` at once and is stamped at the head
  revision (Alembic's recipe for new databases).
* A database created before migrations existed (Keyplane's tables, no ``alembic_version``) is stamped at
  revision ``0001`` (that schema) and upgraded.
* Otherwise the pending revisions run.

Revisions live in ``keyplane/app/migrations/versions`` (shipped in the package).
"""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from keyplane.app.tables import metadata, resources

log = logging.getLogger("keyplane.app.schema")

SCRIPT_LOCATION = "keyplane.app:migrations"
#: The schema of the SCIM store before migrations existed (``metadata.create_all``).
FIRST_REVISION = "0001"
#: Advisory-lock key of the migrations (any constant 64-bit number; this one spells "keyplane").
ADVISORY_LOCK_KEY = 0x6B6579706C616E65


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    return str(ScriptDirectory.from_config(alembic_config()).get_current_head())


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the database to the head revision; concurrent callers wait for each other."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        # SQLite: the BEGIN IMMEDIATE of keyplane.app.database already holds the database's write lock.
        _upgrade(connection)


def _upgrade(connection: Connection) -> None:
    config = alembic_config(connection)
    current = current_revision(connection)
    if current is None:
        if not inspect(connection).has_table(resources.name):
            metadata.create_all(connection)
            command.stamp(config, "head")
            log.info("created the app's tables at revision %s", head_revision())
            return
        command.stamp(config, FIRST_REVISION)
        current = FIRST_REVISION
    head = head_revision()
    if current != head:
        log.info("upgrading the app's tables from revision %s to %s", current, head)
        command.upgrade(config, "head")

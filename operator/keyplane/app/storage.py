"""Storage of provisioned users and groups: SQLAlchemy tables (SQLite by default, any URL works).

The SCIM resources are kept as JSON documents with the columns the IdPs filter on
(``userName``, ``externalId``, ``displayName``) stored in their comparable form and indexed, a
table of unique values, and a membership table derived from the groups' ``members``. Every row
belongs to a partition: the name of its SCIM connection, so two connections never see each
other's users.

This module is the app-facing half (queries, change listeners); ``scim_storage`` is the
scim2-server backend that writes through it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy import Connection, Engine, select

from keyplane.app import schema
from keyplane.app.database import create_database_engine
from keyplane.app.tables import members, resources
from keyplane.app.tables import unique_values as unique_values  # re-exported for scim_storage
from keyplane.policy.email import try_canonical_email

log = logging.getLogger("keyplane.app.storage")


@dataclass(frozen=True)
class ProvisionedUser:
    """A user as the app sees it: identity, state, groups and the role they give."""

    connection: str
    id: str
    user_name: str
    email: str | None
    external_id: str | None
    display_name: str | None
    active: bool
    deleted: bool
    groups: tuple[str, ...]
    role: str | None
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ProvisionedGroup:
    connection: str
    id: str
    display_name: str
    external_id: str | None
    member_ids: tuple[str, ...]


ChangeAction = Literal["upsert", "deactivate", "delete"]


@dataclass(frozen=True)
class UserChange:
    """What a SCIM request did to a user, for the app to mirror into its own user table.

    ``upsert``: the user exists and is active (created, updated, or their role may have changed);
    ``deactivate``: keep the user but block their login (deprovisionAction Deactivate);
    ``delete``: remove the user (deprovisionAction Delete).

    ``login`` is the key to mirror on: the canonical address the user logs in with, the same value
    as :attr:`keyplane.app.LoginResult.email` (the primary email, or the ``userName`` on a connection
    with ``userIdentifier: userName``). None when the user has no canonical address to log in with.
    """

    action: ChangeAction
    user: ProvisionedUser
    login: str | None = None


Pending = tuple[ChangeAction, "ProvisionedUser | None"]
ChangeListener = Callable[[UserChange], None]
RoleFunction = Callable[[str, Sequence[str], bool], "str | None"]
#: Screens a change before the listeners see it: the change to send (its ``login`` filled), or None to
#: suppress it (the caller logs and counts why). ``keyplane.app.scim.ScimRouter`` installs the policy check.
ChangeScreen = Callable[[UserChange], "UserChange | None"]


def _default_role(connection: str, groups: Sequence[str], active: bool) -> str | None:
    return None


def _suppress_all(change: UserChange) -> UserChange | None:
    """Until a SCIM router says which IdP owns what, no change may reach the app (fail closed)."""
    log.warning("user change of %s not sent: no ownership check installed", change.user.connection)
    return None


class Storage:
    """The SQL store shared by every SCIM connection of an app.

    :param url: a SQLAlchemy URL; ``sqlite://`` (the default) is an in-memory database shared by
        every thread, ``sqlite:///path.db`` a file, ``postgresql://...`` (psycopg 3) the production
        shape: several replicas on one database.
    :param engine: an engine to use instead of ``url`` (for SQLite, configure it with
        :func:`keyplane.app.database.configure_sqlite`).
    :param migrate: create or upgrade the tables now (under a lock; see :mod:`keyplane.app.schema`).
    """

    def __init__(self, url: str = "sqlite://", *, engine: Engine | None = None, migrate: bool = True) -> None:
        self.engine = engine if engine is not None else create_database_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if migrate:
            # Creates or upgrades the tables; replicas starting together take turns (schema.upgrade).
            schema.upgrade(self.engine)
        # SQLite has one writer; serialising the operations avoids "database is locked".
        self._write_lock: threading.RLock | None = threading.RLock() if self.is_sqlite else None
        self._local = threading.local()
        self._listeners: list[ChangeListener] = []
        self.role_of: RoleFunction = _default_role
        self.screen_change: ChangeScreen = _suppress_all

    # -- transactions -------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction per SCIM operation; nested calls reuse the open one.

        Changes collected during the transaction are sent to the listeners after commit.
        """
        current: Connection | None = getattr(self._local, "connection", None)
        if current is not None:
            yield current
            return
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            self._local.pending = {}
            with self.engine.begin() as connection:
                self._local.connection = connection
                try:
                    yield connection
                finally:
                    self._local.connection = None
            pending: dict[tuple[str, str], Pending] = self._local.pending
        except BaseException:
            self._local.pending = {}
            raise
        finally:
            if lock is not None:
                lock.release()
        self._local.pending = {}
        if pending and self._listeners:
            self._notify(pending)

    def touch(
        self, partition: str, user_id: str, action: ChangeAction = "upsert", *, snapshot: bool = False
    ) -> None:
        """Record, within the open transaction, that a user changed (sent after commit).

        ``snapshot`` captures the user now, for a user about to be removed.
        """
        pending: dict[tuple[str, str], Pending] | None = getattr(self._local, "pending", None)
        connection: Connection | None = getattr(self._local, "connection", None)
        if pending is None or connection is None or not self._listeners:
            return
        previous = pending.get((partition, user_id))
        if previous is not None and previous[0] in ("delete", "deactivate") and action == "upsert":
            return
        captured = None
        if snapshot:
            row = connection.execute(select(resources).where(resources.c.id == user_id)).first()
            captured = self._user_of(connection, partition, row) if row else None
        pending[(partition, user_id)] = (action, captured)

    def add_listener(self, listener: ChangeListener) -> None:
        """Register a callback called with a :class:`UserChange` after each committed change."""
        self._listeners.append(listener)

    def _notify(self, pending: dict[tuple[str, str], Pending]) -> None:
        for (partition, user_id), (action, snapshot) in pending.items():
            user = self.get_user(partition, user_id, include_deleted=True) or snapshot
            if user is None:
                continue
            if action != "upsert":
                user = replace(user, active=False, role=None)
            if action == "upsert" and not user.active:
                continue
            # The one place changes leave: re-checked against the current bundle (keyplane.policy).
            change = self.screen_change(UserChange(action, user))
            if change is None:
                continue
            for listener in self._listeners:
                try:
                    listener(change)
                except Exception:
                    log.exception("user change listener failed")

    # -- app-facing queries ---------------------------------------------------------

    def _user_of(self, connection: Connection, partition: str, row: Any) -> ProvisionedUser:
        group_names = tuple(
            sorted(
                name or ""
                for (name,) in connection.execute(
                    select(resources.c.label)
                    .join(
                        members, (members.c.group_id == resources.c.id) & (members.c.partition == partition)
                    )
                    .where(members.c.user_id == row.id)
                ).all()
            )
        )
        data = json.loads(row.data)
        active = bool(row.active) and not row.deleted
        return ProvisionedUser(
            connection=partition,
            id=row.id,
            user_name=data.get("userName", ""),
            email=row.email,
            external_id=data.get("externalId"),
            display_name=data.get("displayName"),
            active=active,
            deleted=bool(row.deleted),
            groups=group_names,
            role=self.role_of(partition, group_names, active),
            attributes=data,
        )

    def get_user(
        self, partition: str, user_id: str, *, include_deleted: bool = False
    ) -> ProvisionedUser | None:
        with self.transaction() as connection:
            query = select(resources).where(
                resources.c.partition == partition,
                resources.c.id == user_id,
                resources.c.resource_type == "User",
            )
            if not include_deleted:
                query = query.where(resources.c.deleted.is_(False))
            row = connection.execute(query).first()
            return self._user_of(connection, partition, row) if row else None

    def find_user(
        self, partition: str, login: str, user_identifier: Literal["email", "userName"] = "email"
    ) -> ProvisionedUser | None:
        """The user of a connection whose email (or userName) is ``login``, compared in canonical form.

        A live user wins over a deprovisioned (soft-deleted) one with the same login. An address
        without a canonical form (:mod:`keyplane.policy.email`) finds no one.
        """
        canonical = try_canonical_email(login)
        if canonical is None:
            return None
        column = resources.c.email if user_identifier == "email" else resources.c.user_name
        with self.transaction() as connection:
            row = connection.execute(
                select(resources)
                .where(
                    resources.c.partition == partition,
                    resources.c.resource_type == "User",
                    column == canonical,
                )
                .order_by(resources.c.deleted, resources.c.seq.desc())
            ).first()
            return self._user_of(connection, partition, row) if row else None

    def list_users(self, partition: str, *, include_deleted: bool = False) -> list[ProvisionedUser]:
        with self.transaction() as connection:
            query = select(resources).where(
                resources.c.partition == partition, resources.c.resource_type == "User"
            )
            if not include_deleted:
                query = query.where(resources.c.deleted.is_(False))
            rows = connection.execute(query.order_by(resources.c.seq)).all()
            return [self._user_of(connection, partition, row) for row in rows]

    def list_groups(self, partition: str) -> list[ProvisionedGroup]:
        with self.transaction() as connection:
            rows = connection.execute(
                select(resources)
                .where(resources.c.partition == partition, resources.c.resource_type == "Group")
                .order_by(resources.c.seq)
            ).all()
            result = []
            for row in rows:
                ids = (
                    connection.execute(
                        select(members.c.user_id)
                        .where(members.c.partition == partition, members.c.group_id == row.id)
                        .order_by(members.c.user_id)
                    )
                    .scalars()
                    .all()
                )
                data = json.loads(row.data)
                result.append(
                    ProvisionedGroup(partition, row.id, row.label or "", data.get("externalId"), tuple(ids))
                )
            return result

    def group_names_of(
        self, connection: Connection, partition: str, user_ids: Sequence[str]
    ) -> dict[str, list[tuple[str, str]]]:
        """``{user_id: [(group_id, displayName), ...]}`` for the given users."""
        if not user_ids:
            return {}
        rows = connection.execute(
            select(members.c.user_id, resources.c.id, resources.c.label)
            .join(resources, resources.c.id == members.c.group_id)
            .where(members.c.partition == partition, members.c.user_id.in_(list(user_ids)))
        ).all()
        result: dict[str, list[tuple[str, str]]] = {}
        for user_id, group_id, label in rows:
            result.setdefault(user_id, []).append((group_id, label or ""))
        return result


_seq_lock = threading.Lock()
_last_seq = 0


def next_seq() -> int:
    """A process-wide increasing number (nanoseconds since the epoch, bumped on ties)."""
    global _last_seq
    with _seq_lock:
        _last_seq = max(_last_seq + 1, time.time_ns())
        return _last_seq

"""Logins in progress, in the app's database: a login started on one replica finishes on any other.

Starting a login (SAML AuthnRequest, OIDC authorization request) stores what the callback must check
(the SAML request ID that ``InResponseTo`` must name, the OIDC ``state``, ``nonce`` and PKCE verifier,
and where to go afterwards) under a random handle. The browser carries only that handle, in a signed
cookie bound to the IdP, so the PKCE verifier and nonce never leave the server. The callback *takes*
the entry: it is deleted in the same statement, so a login finishes at most once, on one replica.
Entries expire after :data:`PENDING_MAX_AGE`; expired ones are deleted when new logins start.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import secrets
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select

from keyplane.app.clock import Clock, utcnow
from keyplane.app.tables import delete_expired, login_pending

if TYPE_CHECKING:
    from keyplane.app.storage import Storage

#: Seconds a started login may take (the user types a password, answers MFA).
PENDING_MAX_AGE = 600


def _key(handle: str) -> str:
    # Only the hash is stored: reading the table does not give a handle a browser could present.
    return hashlib.sha256(handle.encode()).hexdigest()


class LoginStateStore:
    """Pending logins shared by the replicas; ``flow`` is ``saml:<idp>`` or ``oidc:<idp>``."""

    def __init__(self, storage: Storage, *, clock: Clock = utcnow, max_age: int = PENDING_MAX_AGE) -> None:
        self.storage = storage
        self.clock = clock
        self.max_age = datetime.timedelta(seconds=max_age)

    def put(self, flow: str, data: dict[str, Any]) -> str:
        """Store a started login; returns the handle for the browser's cookie."""
        handle = secrets.token_urlsafe(32)
        now = self.clock()
        with self.storage.transaction() as connection:
            delete_expired(connection, login_pending, now)
            connection.execute(
                insert(login_pending).values(
                    key=_key(handle), flow=flow, data=json.dumps(data), expires_at=now + self.max_age
                )
            )
        return handle

    def take(self, flow: str, handle: str) -> dict[str, Any] | None:
        """The login a handle started (removed: a login finishes once); None if unknown or expired."""
        key = _key(handle)
        with self.storage.transaction() as connection:
            deleted = connection.execute(
                delete(login_pending)
                .where(login_pending.c.key == key, login_pending.c.flow == flow)
                .returning(login_pending.c.data, login_pending.c.expires_at)
            ).first()
        if deleted is None:
            return None
        expires_at = deleted.expires_at
        if expires_at.tzinfo is None:  # SQLite returns naive datetimes
            expires_at = expires_at.replace(tzinfo=datetime.UTC)
        if expires_at <= self.clock():
            return None
        data: dict[str, Any] = json.loads(deleted.data)
        return data

    def __len__(self) -> int:
        with self.storage.transaction() as connection:
            return len(connection.execute(select(login_pending.c.key)).all())

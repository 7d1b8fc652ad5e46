"""Replay protection: an assertion (or ID token) ID is accepted once, until it expires.

python3-saml validates a Response but keeps no state, so its documentation asks the SP to
remember the IDs of consumed assertions until their ``NotOnOrAfter``. Two stores:

* :class:`SqlReplayCache`, what :class:`~keyplane.app.Keyplane` uses: a table of the app's database
  (primary key = the identifier's SHA-256), so an assertion used on one replica is refused on every
  other. Expired entries are deleted by each new entry: the table holds only unexpired identifiers.
* :class:`ReplayCache`: the same in process memory, for a single process without a database.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from keyplane.app.clock import Clock, utcnow
from keyplane.app.tables import delete_expired, replay

if TYPE_CHECKING:
    from keyplane.app.storage import Storage

SKEW = datetime.timedelta(minutes=5)
#: How long an identifier without an expiry of its own is remembered.
MAX_AGE = datetime.timedelta(hours=1)


class Replay(Protocol):
    def remember(self, identifier: str, not_on_or_after: datetime.datetime | None) -> bool:
        """Record an ID; False if it was already seen and has not expired (a replay)."""


def id_token_identifier(idp: str, claims: Mapping[str, Any]) -> tuple[str, datetime.datetime | None]:
    """The replay key of a validated ID token (its ``jti``, else a hash of its identifying claims),
    and its expiry (``exp``)."""
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        token = f"jti:{claims.get('iss')}:{jti}"
    else:
        identifying = {k: claims.get(k) for k in ("iss", "sub", "aud", "iat", "nonce", "exp")}
        token = "claims:" + hashlib.sha256(json.dumps(identifying, sort_keys=True, default=str).encode()).hexdigest()
    exp = claims.get("exp")
    expiry = datetime.datetime.fromtimestamp(exp, datetime.UTC) if isinstance(exp, int | float) else None
    return f"oidc:{idp}:{token}", expiry


class ReplayCache:
    def __init__(
        self, *, clock: Clock = utcnow, skew: datetime.timedelta = SKEW, max_age: datetime.timedelta = MAX_AGE
    ) -> None:
        self.clock = clock
        self.skew = skew
        self.max_age = max_age
        self._seen: dict[str, datetime.datetime] = {}
        self._lock = threading.Lock()

    def remember(self, identifier: str, not_on_or_after: datetime.datetime | None) -> bool:
        """Record an ID; False if it was already seen and has not expired (a replay)."""
        now = self.clock()
        expiry = (not_on_or_after or now + self.max_age) + self.skew
        with self._lock:
            for key in [k for k, until in self._seen.items() if until <= now]:
                del self._seen[key]
            if identifier in self._seen:
                return False
            self._seen[identifier] = expiry
            return True

    def __len__(self) -> int:
        return len(self._seen)


class SqlReplayCache:
    """The replay store shared by every replica on one database (see the module's docstring)."""

    def __init__(
        self,
        storage: Storage,
        *,
        clock: Clock = utcnow,
        skew: datetime.timedelta = SKEW,
        max_age: datetime.timedelta = MAX_AGE,
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.skew = skew
        self.max_age = max_age

    def remember(self, identifier: str, not_on_or_after: datetime.datetime | None) -> bool:
        """Record an ID; False if it was already seen and has not expired (a replay).

        Concurrent calls with one identifier (on any replica) give one True: the primary key decides.
        """
        now = self.clock()
        expiry = (not_on_or_after or now + self.max_age) + self.skew
        key = hashlib.sha256(identifier.encode()).hexdigest()
        with self.storage.transaction() as connection:
            delete_expired(connection, replay, now)
            dialect = connection.dialect.name
            if dialect in ("postgresql", "sqlite"):
                module = postgresql if dialect == "postgresql" else sqlite
                statement = (
                    module.insert(replay)
                    .values(key=key, expires_at=expiry)
                    .on_conflict_do_nothing(index_elements=[replay.c.key])
                    .returning(replay.c.key)
                )
                return connection.execute(statement).first() is not None
            if connection.execute(select(replay.c.key).where(replay.c.key == key)).first() is not None:
                return False
            connection.execute(insert(replay).values(key=key, expires_at=expiry))
            return True

    def __len__(self) -> int:
        with self.storage.transaction() as connection:
            return int(connection.execute(select(func.count()).select_from(replay)).scalar_one())

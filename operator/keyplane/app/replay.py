"""Replay protection: an assertion (or ID token) ID is accepted once, until it expires.

python3-saml validates a Response but keeps no state, so its documentation asks the SP to
remember the IDs of consumed assertions until their ``NotOnOrAfter``. This cache is per
process: behind several replicas, pass a shared implementation of :class:`ReplayCache`'s
``remember`` (e.g. a database unique key).
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable

from keyplane.app.clock import Clock, utcnow


class ReplayCache:
    def __init__(
        self,
        *,
        clock: Clock = utcnow,
        skew: datetime.timedelta = datetime.timedelta(minutes=5),
        max_age: datetime.timedelta = datetime.timedelta(hours=1),
    ) -> None:
        self.clock = clock
        self.skew = skew
        self.max_age = max_age
        self._seen: dict[str, datetime.datetime] = {}
        self._lock = threading.Lock()
        self.on_replay: Callable[[str], None] | None = None  # called with the ID of each replay (metrics)

    def remember(self, identifier: str, not_on_or_after: datetime.datetime | None) -> bool:
        """Record an ID; False if it was already seen and has not expired (a replay)."""
        now = self.clock()
        expiry = (not_on_or_after or now + self.max_age) + self.skew
        with self._lock:
            for key in [k for k, until in self._seen.items() if until <= now]:
                del self._seen[key]
            replayed = identifier in self._seen
            if not replayed:
                self._seen[identifier] = expiry
        if replayed and self.on_replay is not None:
            self.on_replay(identifier)
        return not replayed

    def __len__(self) -> int:
        return len(self._seen)

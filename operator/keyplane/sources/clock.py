"""Clocks: the only source of "now" for code that must be testable without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Something that tells the time as a timezone-aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to (tests, ``keyplane render``)."""

    def __init__(self, dt: datetime) -> None:
        self._now = _require_aware(dt)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward (or back, for a negative delta) and return the new time."""
        self._now = self._now + delta
        return self._now

    def set(self, dt: datetime) -> None:
        self._now = _require_aware(dt)


def _require_aware(dt: datetime) -> datetime:
    # Naive datetimes silently compare wrong against API-server timestamps; refuse them early.
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("FrozenClock needs a timezone-aware datetime")
    return dt.astimezone(UTC)

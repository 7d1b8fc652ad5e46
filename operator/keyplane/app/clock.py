"""The clock the app side reads, injectable so tests can move time."""

from __future__ import annotations

import datetime
from collections.abc import Callable

Clock = Callable[[], datetime.datetime]


def utcnow() -> datetime.datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.datetime.now(datetime.UTC)


def parse_time(value: str | None) -> datetime.datetime | None:
    """Parse an RFC 3339 timestamp such as ``2026-11-24T10:00:00Z``; None stays None."""
    if value is None:
        return None
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed

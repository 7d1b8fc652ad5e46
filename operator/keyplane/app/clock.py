"""The clock the app side reads, injectable so tests can move time."""

from __future__ import annotations

import datetime
from collections.abc import Callable

Clock = Callable[[], datetime.datetime]


def utcnow() -> datetime.datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.datetime.now(datetime.UTC)

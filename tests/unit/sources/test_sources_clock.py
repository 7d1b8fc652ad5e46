from __future__ import annotations

import datetime as dt

import pytest

from keyplane.sources.clock import Clock, FrozenClock, SystemClock


def test_system_clock_is_aware_utc() -> None:
    now = SystemClock().now()
    assert now.tzinfo is not None and now.utcoffset() == dt.timedelta(0)
    assert isinstance(SystemClock(), Clock)


def test_frozen_clock_advances_only_when_told() -> None:
    start = dt.datetime(2025, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    clock = FrozenClock(start)
    assert clock.now() == start and clock.now().utcoffset() == dt.timedelta(0)
    assert clock.advance(dt.timedelta(minutes=5)) == start + dt.timedelta(minutes=5)
    assert clock.now() == start + dt.timedelta(minutes=5)
    assert isinstance(clock, Clock)


def test_frozen_clock_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError):
        FrozenClock(dt.datetime(2025, 1, 1))

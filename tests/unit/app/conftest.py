from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from keyplane.app import Bundle, BundleStore, Keyplane, UserChange

from .helpers import bundle_dict


class FakeClock:
    def __init__(self, now: datetime.datetime) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **kwargs: Any) -> None:
        self.now += datetime.timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC))


@pytest.fixture
def changes() -> list[UserChange]:
    return []


@pytest.fixture
def keyplane(clock: FakeClock, changes: list[UserChange]) -> Keyplane:
    kp = Keyplane(
        BundleStore.from_bundle(Bundle.from_dict(bundle_dict())), secret_key="test-secret", clock=clock
    )
    kp.add_listener(changes.append)
    return kp


@pytest.fixture
async def client(keyplane: Keyplane) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=keyplane.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="https://app.example.com") as c:
        yield c

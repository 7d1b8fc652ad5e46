from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy

from keyplane.app import Bundle, BundleStore, Keyplane, Storage, UserChange
from keyplane.app.tables import metadata

from .helpers import bundle_dict
from .oidc_provider import FakeOidcProvider


class FakeClock:
    def __init__(self, now: datetime.datetime) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **kwargs: Any) -> None:
        self.now += datetime.timedelta(**kwargs)


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOidcProvider]:
    """The hand-written OIDC provider (tests/peers runs the real oidc-provider), one per test module."""
    fake = FakeOidcProvider()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC))


@pytest.fixture
def changes() -> list[UserChange]:
    return []


@pytest.fixture(scope="session")
def postgres_database(postgres_server: Any) -> Iterator[str]:
    """One database of the session's PostgreSQL server for the app's tests, emptied before each."""
    url: str = postgres_server.create_database("keyplane_app")
    Storage(url).engine.dispose()  # migrated once
    yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The app's database: SQLite in memory (the embedded default) and a real PostgreSQL server."""
    if request.param == "sqlite":
        return "sqlite://"
    url: str = request.getfixturevalue("postgres_database")
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        tables = ", ".join(table.name for table in metadata.sorted_tables)
        connection.execute(sqlalchemy.text(f"TRUNCATE {tables}"))
    engine.dispose()
    return url


@pytest.fixture
def storage(database_url: str) -> Iterator[Storage]:
    """A :class:`Storage` on each database; its connections are closed after the test."""
    created = Storage(database_url)
    yield created
    created.engine.dispose()


@pytest.fixture
def keyplane(clock: FakeClock, changes: list[UserChange], storage: Storage) -> Keyplane:
    kp = Keyplane(
        BundleStore.from_bundle(Bundle.from_dict(bundle_dict())),
        secret_key="test-secret",
        clock=clock,
        storage=storage,
    )
    kp.add_listener(changes.append)
    return kp


@pytest.fixture
async def client(keyplane: Keyplane) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=keyplane.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="https://app.example.com") as c:
        yield c

"""Migrations: the revisions build the models' schema, an old database is upgraded with its data,
and replicas starting together on one database migrate it once (SQLite file and real PostgreSQL)."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from keyplane.app import Storage
from keyplane.app.database import create_database_engine
from keyplane.app.schema import FIRST_REVISION, alembic_config, current_revision, head_revision
from keyplane.app.tables import metadata, resources, unique_values

from .helpers import OKTA_TOKEN


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database: a SQLite file, or a database of the session's PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keyplane.db'}"
    else:
        yield request.getfixturevalue("postgres_server").create_database("schema")


def _migrate_with_alembic(url: str, revision: str) -> None:
    engine = create_database_engine(url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)
    engine.dispose()


def test_revisions_build_the_schema_the_models_declare(empty_database: str) -> None:
    _migrate_with_alembic(empty_database, "head")
    engine = create_database_engine(empty_database)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
        assert current_revision(connection) == head_revision()
    engine.dispose()
    assert differences == []


def _seed_revision_1(url: str) -> None:
    """A database as Keyplane left it before migrations: revision 1's tables, no alembic_version."""
    _migrate_with_alembic(url, FIRST_REVISION)
    engine = create_database_engine(url)
    now = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("DROP TABLE alembic_version"))
        connection.execute(
            resources.insert().values(
                id="u1", partition="okta", resource_type="User", version=3, seq=1, created=now,
                last_modified=now, user_name="jdoe@acme.com", email="jdoe@acme.com", active=True,
                deleted=False, data='{"userName": "JDoe@acme.com", "active": true}',
            )
        )
        connection.execute(
            unique_values.insert().values(
                partition="okta", urn="urn:ietf:params:scim:schemas:core:2.0:User:userName",
                value="jdoe@acme.com", resource_id="u1",
            )
        )
    engine.dispose()


async def test_a_database_of_the_previous_schema_is_upgraded_with_its_users(empty_database: str) -> None:
    import httpx

    from keyplane.app import Bundle, BundleStore, Keyplane

    from .helpers import bundle_dict

    _seed_revision_1(empty_database)
    kp = Keyplane(BundleStore.from_bundle(Bundle.from_dict(bundle_dict())), database_url=empty_database,
                  secret_key="s")  # fmt: skip
    try:
        with kp.storage.engine.connect() as connection:
            assert current_revision(connection) == head_revision() != FIRST_REVISION
            tables = set(sqlalchemy.inspect(connection).get_table_names())
        assert {"keyplane_login_pending", "keyplane_replay"} <= tables
        user = kp.storage.find_user("okta", "jdoe@acme.com")
        assert user is not None and user.active and user.role == "Viewer"
        assert kp.replay.remember("saml:okta:_a1", None) and not kp.replay.remember("saml:okta:_a1", None)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://app.example.com",
            headers={"Authorization": f"Bearer {OKTA_TOKEN}"},
        ) as client:  # fmt: skip
            r = await client.get("/scim/v2/okta/Users/u1")
            assert r.status_code == 200 and r.json()["meta"]["version"] == 'W/"3"'
            # The unique values of revision 1 still hold.
            r = await client.post(
                "/scim/v2/okta/Users",
                json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "JDOE@acme.com"},
            )
            assert r.status_code == 409 and r.json()["scimType"] == "uniqueness"
    finally:
        kp.storage.engine.dispose()


def test_replicas_starting_together_migrate_once(empty_database: str) -> None:
    """Four app instances (each its own engine and connections) start at once on an empty database."""
    start = threading.Barrier(4)
    errors: list[BaseException] = []
    storages: list[Storage] = []

    def replica() -> None:
        start.wait()
        try:
            storages.append(Storage(empty_database))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for storage in storages:
        storage.engine.dispose()
    assert errors == []
    engine = create_database_engine(empty_database)
    with engine.connect() as connection:
        versions = connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert versions == [(head_revision(),)]


def test_migrations_ship_inside_the_package() -> None:
    from importlib.resources import files

    versions = files("keyplane.app") / "migrations" / "versions"
    names = {entry.name for entry in versions.iterdir()}
    assert {"0001_scim_store.py", "0002_shared_login_state.py"} <= names
    assert (files("keyplane.app") / "migrations" / "env.py").is_file()




def test_database_urls_in_their_usual_spellings_use_psycopg_3() -> None:
    from keyplane.app.database import normalise_url

    assert normalise_url("postgres://u:p@db/web") == "postgresql+psycopg://u:p@db/web"
    assert normalise_url("postgresql://u:p@db/web") == "postgresql+psycopg://u:p@db/web"
    assert normalise_url("postgresql+psycopg://u@db/web") == "postgresql+psycopg://u@db/web"
    assert normalise_url("sqlite:///keyplane.db") == "sqlite:///keyplane.db"


def test_a_postgresql_url_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from keyplane.app.database import create_database_engine

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(ImportError, match=r"keyplane\[app,postgres\]") as raised:
        create_database_engine("postgresql://web:s3cret@db.example/web")
    assert "s3cret" not in str(raised.value)

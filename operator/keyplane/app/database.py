"""An SQLAlchemy engine for the app's database URL, with the settings each dialect needs.

* ``sqlite://`` (in memory, one connection shared by the threads), ``sqlite:///path.db``: WAL, and every
  transaction starts with ``BEGIN IMMEDIATE``, so that a read-then-write (a uniqueness check, then the
  insert) cannot interleave with another process's write.
* ``postgresql://`` / ``postgres://`` (the usual ``DATABASE_URL`` spellings) use psycopg 3
  (``postgresql+psycopg://``, extra ``keyplane[postgres]``); connections are checked before use, since a
  replica outlives database restarts and fail-overs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

#: Seconds a SQLite writer waits for another process's transaction before "database is locked".
SQLITE_BUSY_TIMEOUT = 30


def normalise_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` mean psycopg 3 (psycopg2 is not a dependency)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_database_engine(url: str) -> Engine:
    """The engine of a database URL (see the module's docstring for what each dialect gets)."""
    url = normalise_url(url)
    kwargs: dict[str, Any] = {}
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT}
        if url in ("sqlite://", "sqlite:///:memory:"):
            kwargs["poolclass"] = StaticPool
    elif backend == "postgresql":
        # The SCIM endpoint runs each request in a worker thread: room for a burst of parallel requests.
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
    try:
        engine = create_engine(url, **kwargs)
    except ImportError as exc:
        if backend != "postgresql":
            raise
        raise ImportError(
            f"the database URL {make_url(url).render_as_string(hide_password=True)} needs psycopg 3: "
            "pip install 'keyplane[app,postgres]'"
        ) from exc
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    return engine


def configure_sqlite(engine: Engine) -> None:
    """WAL, and ``BEGIN IMMEDIATE`` for every transaction (SQLAlchemy's documented recipe)."""
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own implicit BEGIN (deferred) is turned off; _sqlite_begin emits ours.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")

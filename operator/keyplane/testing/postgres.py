"""A throw-away PostgreSQL server for tests and benchmarks: ``initdb`` + ``pg_ctl`` in a temporary folder.

It listens on 127.0.0.1 only (no Unix socket), with password authentication, and is stopped (and its
folder removed) by :meth:`PostgresServer.stop`. ``initdb`` refuses to run as root: as root, the
server's commands run as the unprivileged user ``nobody`` (``runuser``), which owns the folder.

Durability is turned off (``fsync``, ``synchronous_commit``, ``full_page_writes``): a test server's
data is thrown away, and without fsync a ``CREATE DATABASE`` per test costs milliseconds.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "keyplane"
#: Where the PostgreSQL binaries are looked for when ``initdb`` is not on PATH (Debian's layout).
DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin"


def find_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (PATH first, then Debian's versioned folders)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob(f"{DEBIAN_BINARIES}/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL server; :meth:`create_database` hands out fresh databases as SQLAlchemy URLs."""

    def __init__(self, binaries: Path | None = None) -> None:
        found = binaries or find_binaries()
        if found is None:
            raise FileNotFoundError(
                "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` "
                "package (make installs it: `make postgres`)"
            )
        self.binaries = found
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self.folder = Path(tempfile.mkdtemp(prefix="keyplane-pg-"))
        self.data = self.folder / "data"
        self._run_as: list[str] = []
        self._started = False
        self._databases = 0

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    def _command(self, name: str, *args: str) -> list[str]:
        return [*self._run_as, str(self.binaries / name), *args]

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.folder, nobody.pw_uid, nobody.pw_gid)
            self._run_as = ["runuser", "-u", "nobody", "--"]
        password_file = self.folder / "password"
        password_file.write_text(self.password)
        if self._run_as:
            os.chown(password_file, pwd.getpwnam("nobody").pw_uid, -1)
        subprocess.run(
            self._command(
                "initdb", "-D", str(self.data), "-U", USER, f"--pwfile={password_file}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
            ),
            check=True, capture_output=True, cwd=self.folder,
        )  # fmt: skip
        password_file.unlink()
        self.port = _free_port()
        options = (
            f"-p {self.port} -h 127.0.0.1 -k '' -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            self._command("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-o", options, "start"),
            check=True, capture_output=True, cwd=self.folder,
        )  # fmt: skip
        self._started = True
        return self

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL (psycopg 3) of a database of this server."""
        return f"postgresql+psycopg://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "keyplane") -> str:
        """A new, empty database; returns its URL."""
        import psycopg

        self._databases += 1
        name = f"{prefix}_{os.getpid()}_{self._databases}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, password=self.password, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self._started:
            subprocess.run(
                self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"),
                check=False, capture_output=True, cwd=self.folder,
            )  # fmt: skip
            self._started = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

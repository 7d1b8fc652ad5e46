"""Shared fixtures: the emulated API server and the real Keyplane operator running against it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from support import (  # noqa: F401
    TEST_SETTINGS,
    OperatorFactory,
    chart_cluster,
    missing,
    operator_factory,
    test_settings,
)

# CI runs the fuzz tests on fixed seeds (a red CI names a change, not luck); locally they explore.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture
async def cluster() -> AsyncIterator[Any]:
    """The emulated API server, the operator authorized by the chart's RBAC: see `support.chart_cluster`."""
    async with chart_cluster() as emulated:
        yield emulated


@pytest.fixture
def keyplane_operator(cluster: Any) -> OperatorFactory:
    """`async with keyplane_operator(**settings) as runtime:` runs the real operator (all handlers)."""
    return operator_factory(cluster)


@pytest.fixture
async def idp_server() -> AsyncIterator[Any]:
    """A controllable metadata / discovery server on 127.0.0.1."""
    from integration.idp_server import IdPServer

    server = await IdPServer().start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A real PostgreSQL server for the session (initdb + pg_ctl in a temporary folder, 127.0.0.1).

    Started on first use, stopped at the end of the session. Without the server's binaries the tests
    that need it are skipped locally, and fail in CI (``CI`` set): CI must not pass without them.
    """
    from keyplane.testing.postgres import PostgresServer, find_binaries

    if find_binaries() is None:
        missing("PostgreSQL server binaries (initdb, pg_ctl) not found: `make postgres` installs them")
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()

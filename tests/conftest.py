"""Shared fixtures: the emulated API server and the real Keyplane operator running against it."""

from __future__ import annotations

import os

# The per-object timers tick every second in tests instead of every minute (read at import).
os.environ.setdefault("KEYPLANE_TIMER_INTERVAL", "1")

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from keyplane.api.crds import all_crds
from support import TEST_SETTINGS, test_settings  # noqa: F401  (kept importable from here too)

# CI runs the fuzz tests on fixed seeds (a red CI names a change, not luck); locally they explore.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

@pytest.fixture
async def cluster() -> AsyncIterator[Any]:
    """An emulated Kubernetes API on 127.0.0.1 with Keyplane's CRDs, and KUBECONFIG pointing at it."""
    from keyplane.testing import emulated_cluster, use_kubeconfig

    async with emulated_cluster(all_crds()) as emulated:
        restore = use_kubeconfig(emulated.kubeconfig_path)
        try:
            yield emulated
        finally:
            restore()


OperatorFactory = Callable[..., AbstractAsyncContextManager[Any]]


@pytest.fixture
def keyplane_operator(cluster: Any) -> OperatorFactory:
    """`async with keyplane_operator(**settings) as runtime:` runs the real operator (all handlers)."""
    import kopf

    from keyplane import handlers  # noqa: F401  (registers the handlers once)
    from keyplane.testing import running_operator

    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[Any]:
        peering = overrides.pop("peering_name", None)
        priority = overrides.pop("priority", 0)
        settings = test_settings(peering_name=peering, priority=priority, **overrides)
        memo = kopf.Memo(settings=settings)
        async with running_operator(memo=memo, clusterwide=True, peering_name=peering, priority=priority,
                                    shutdown_timeout=8.0):
            yield memo.runtime

    return run


@pytest.fixture
async def idp_server() -> AsyncIterator[Any]:
    """A controllable metadata / discovery server on 127.0.0.1."""
    from integration.idp_server import IdPServer

    server = await IdPServer().start()
    try:
        yield server
    finally:
        await server.stop()

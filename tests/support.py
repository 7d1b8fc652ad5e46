"""Helpers shared by the test suites, importable from any of them (`from support import test_settings`).

A conftest.py is not importable by name: `from conftest import ...` in tests/e2e/conftest.py finds that
file itself. Whatever two suites share lives here.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, NoReturn

import pytest

from keyplane.api.crds import all_crds
from keyplane.settings import Settings

TEST_SETTINGS: dict[str, Any] = dict(
    liveness_endpoint=None,
    bundle_debounce=0.05,
    bundle_max_delay=0.5,
    resync_interval=1.0,
    timer_interval=1.0,  # the periodic checks run every second instead of every minute
    allow_private_networks=True,
    allow_insecure_http=True,
    metadata_timeout=3.0,
    metadata_connect_timeout=1.0,
)


def missing(reason: str) -> NoReturn:
    """Skip a test whose tool or fixture is missing here; in CI (``CI`` set) the Makefile installs every one
    of them, so a missing one is a broken set-up and fails the test instead of passing it by skipping."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: `make test` installs it)", pytrace=False)
    pytest.skip(reason)


def test_settings(**overrides: Any) -> Settings:
    """Settings for tests: fast debounce, no liveness port, local metadata servers allowed."""
    return Settings(**{**TEST_SETTINGS, **overrides})


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test for pytest to collect


@asynccontextmanager
async def chart_cluster() -> AsyncIterator[Any]:
    """An emulated Kubernetes API on 127.0.0.1 with Keyplane's CRDs, and KUBECONFIG pointing at it.

    KUBECONFIG carries a token of the chart's ServiceAccount: whatever runs the operator (the fixture
    below, `keyplane run` as a process) is authorized against the chart's RBAC (`helm template`), as
    when installed. The cluster's helpers (create/patch/get...) act as the admin, as the user would."""
    from keyplane.testing import emulated_cluster, render_chart_rbac, use_kubeconfig

    async with emulated_cluster(all_crds(), rbac=render_chart_rbac()) as emulated:
        restore = use_kubeconfig(emulated.kubeconfig_path)
        try:
            yield emulated
        finally:
            restore()


OperatorFactory = Callable[..., AbstractAsyncContextManager[Any]]


def operator_factory(cluster: Any) -> OperatorFactory:
    """`async with factory(**settings) as runtime:` runs the real operator (all handlers) on `cluster`.

    With `peering_name`, the chart is rendered in HA mode (its peering rules); with `namespaces`, the
    operator watches only those and the chart is rendered with `watchNamespaces` (Roles per namespace)."""
    import kopf

    from keyplane import handlers  # noqa: F401  (registers the handlers once)
    from keyplane.testing import render_chart_rbac, running_operator

    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[Any]:
        peering = overrides.pop("peering_name", None)
        priority = overrides.pop("priority", 0)
        namespaces = list(overrides.get("namespaces") or ())
        settings = test_settings(peering_name=peering, priority=priority, **overrides)
        memo = kopf.Memo(settings=settings)
        if cluster.rbac is not None:  # the chart rendered for this mode, as `helm install` would be
            values: dict[str, Any] = {"ha": {"enabled": bool(peering)}, "watchNamespaces": namespaces}
            await cluster.use_rbac(render_chart_rbac(values))
        def refused() -> str:
            refusals = cluster.authorizer.refusals(cluster.rbac.user if cluster.rbac else None)
            return "the API server refused the operator:\n" + "\n".join(refusals[:20]) if refusals else ""

        try:
            async with running_operator(memo=memo, clusterwide=not namespaces, namespaces=namespaces,
                                        peering_name=peering, priority=priority, shutdown_timeout=8.0):
                yield memo.runtime
        except AssertionError as e:  # e.g. a wait that timed out: say why, if the server refused requests
            if refused():
                raise AssertionError(f"{e}\n{refused()}") from e
            raise
        # A request the chart does not allow, or one without credentials, fails the test even if the
        # operator survived it (a real API server would have refused it the same way).
        assert not refused(), refused()

    return run

"""The end-to-end suite: the integration scenarios against a real cluster (`make e2e`).

It runs when KUBECONFIG points at a cluster (e.g. `make kind-up`) and is skipped, saying why,
otherwise. The operator runs in-process against that cluster; each test's namespaces are deleted
afterwards. Request accounting (steady-state write counts) needs the emulator: those assertions skip.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from keyplane.api.crds import all_crds
from keyplane.testing.cluster import EmulatedCluster

TEST_NAMESPACES = ("team-a", "keyplane-demo")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


class RealCluster(EmulatedCluster):
    """EmulatedCluster's kubectl-like helpers (discovery, apply, get, patch...) over a real API server."""

    def __init__(self) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=os.environ["KUBECONFIG"], client_configuration=configuration)
        verify: ssl.SSLContext | bool = bool(configuration.verify_ssl)
        if configuration.verify_ssl and configuration.ssl_ca_cert:
            verify = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        cert = (configuration.cert_file, configuration.key_file) if configuration.cert_file else None
        token = configuration.get_api_key_with_prefix("authorization")
        self.url = configuration.host
        self._client = httpx.AsyncClient(base_url=self.url, verify=verify, cert=cert, timeout=30.0,
                                         headers={"Authorization": token} if token else {})
        self._discovery: dict[str, list[dict[str, Any]]] = {}

    def mark(self) -> None:
        pytest.skip("counting API writes needs the emulated API server (covered by make test)")

    async def stop(self) -> None:
        await self._client.aclose()


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    path = os.environ.get("KUBECONFIG")
    if not path:
        pytest.skip("KUBECONFIG is not set: the e2e suite needs a real cluster (make kind-up, then make e2e)")
    return path


async def _install_crds(cluster: RealCluster) -> None:
    for crd in all_crds():
        await cluster.apply(crd)
    for crd in all_crds():
        async def established(name: str = crd["metadata"]["name"]) -> bool:
            obj = await cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name)
            conds = ((obj or {}).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

        await cluster.wait_for(established, timeout=60)


async def _delete_namespaces(cluster: RealCluster) -> None:
    for ns in TEST_NAMESPACES:
        for kind in ("IdentityProvider", "SSODomain", "ScimConnection"):
            try:
                items = await cluster.list("keyplane.dev/v1alpha1", kind, ns)
            except Exception:
                continue
            for item in items:  # the operator is stopped by now: release its finalizers
                await cluster.patch("keyplane.dev/v1alpha1", kind, ns, item["metadata"]["name"],
                                    {"metadata": {"finalizers": None}})
        await cluster.delete("v1", "Namespace", None, ns)
    for ns in TEST_NAMESPACES:
        async def gone(name: str = ns) -> bool:
            return await cluster.get("v1", "Namespace", None, name) is None

        await cluster.wait_for(gone, timeout=120, interval=1.0)


@pytest.fixture
async def cluster(kubeconfig: str) -> AsyncIterator[RealCluster]:
    real = RealCluster()
    try:
        await _install_crds(real)
        await _delete_namespaces(real)
        yield real
        await _delete_namespaces(real)
    finally:
        await real.stop()


@pytest.fixture
def keyplane_operator(cluster: RealCluster) -> Any:
    import kopf

    from conftest import test_settings
    from keyplane import handlers  # noqa: F401
    from keyplane.testing import running_operator

    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[Any]:
        memo = kopf.Memo(settings=test_settings(**overrides))
        async with running_operator(memo=memo, clusterwide=True, startup_timeout=60):
            yield memo.runtime
        await asyncio.sleep(0)

    return run

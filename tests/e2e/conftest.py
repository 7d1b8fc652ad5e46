"""The end-to-end suite: the integration scenarios against any conformant API server (`make e2e`).

$KUBECONFIG names the cluster and an admin identity. With it the suite plays the user (CRDs, test
objects) and installs what the chart installs for the operator: `helm template` of helm/keyplane,
keeping the ServiceAccount and its RBAC (applied, and removed afterwards if the suite created them).
The operator runs in-process, as deployed: authenticated with a token of the chart's ServiceAccount
from the TokenRequest API, so a permission the chart lacks fails here as it would in a pod.

Each test gets fresh namespaces (`team-a-<random>`, ...): the scenarios name `team-a`, `team-b` and
`keyplane-demo`; here their `NS` constants are rebound for the test and `RealCluster` maps the literal
names in request paths and manifests. Afterwards the test's Keyplane objects are deleted (their
finalizers released: the operator is stopped by then) and so are its namespaces, without waiting for
namespace finalization (an API server without a namespace controller never finishes it).

Skipped, saying why, when KUBECONFIG is unset. Request accounting (steady-state write counts) needs
the emulator: those assertions skip here (covered by `make test`). tests/e2e/README.md says more.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from keyplane.api.crds import all_crds
from keyplane.api.kinds import API_GROUP_VERSION, KINDS
from keyplane.sources.credentials import ClusterCredentials, StaticToken
from keyplane.sources.httpx_auth import ClusterAuth
from keyplane.sources.kubeconfig import load_kubeconfig
from keyplane.testing.cluster import ApiError, EmulatedCluster
from support import test_settings

# The namespaces the integration scenarios name; each e2e test gets fresh ones in their place.
SCENARIO_NAMESPACES = ("team-a", "team-b", "keyplane-demo")
CHART_NAMESPACE = os.environ.get("KEYPLANE_E2E_CHART_NAMESPACE", "keyplane-system")
TOKEN_SECONDS = 3600  # one token for the whole run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


class RealCluster(EmulatedCluster):
    """EmulatedCluster's kubectl-like helpers (discovery, apply, get, patch...) over a real API server,
    as the admin of $KUBECONFIG, mapping the scenarios' namespace names to this test's fresh ones."""

    def __init__(self, admin: ClusterCredentials, namespaces: Mapping[str, str] | None = None) -> None:
        self.url = admin.server
        self.namespaces = dict(namespaces or {})
        self._client = httpx.AsyncClient(base_url=self.url, verify=admin.ssl_context(), auth=ClusterAuth(admin),
                                         timeout=30.0)
        self._discovery: dict[str, list[dict[str, Any]]] = {}

    def mark(self) -> None:
        pytest.skip("counting API writes needs the emulated API server (covered by make test)")

    async def stop(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, path: str, *, json: Any = None,
                       params: Mapping[str, str] | None = None, content_type: str | None = None) -> Any:
        path = re.sub(r"/namespaces/([^/]+)", lambda m: f"/namespaces/{self.namespaces.get(m[1], m[1])}", path)
        return await super()._request(method, path, json=self._mapped(json), params=params,
                                      content_type=content_type)

    def _mapped(self, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            return body
        meta = dict(body["metadata"])
        if meta.get("namespace") in self.namespaces:
            meta["namespace"] = self.namespaces[meta["namespace"]]
        if body.get("kind") == "Namespace" and meta.get("name") in self.namespaces:
            meta["name"] = self.namespaces[meta["name"]]
        return {**body, "metadata": meta}


@pytest.fixture(scope="session")
def admin_kubeconfig() -> list[str]:
    path = os.environ.get("KUBECONFIG")
    if not path:
        pytest.skip("KUBECONFIG is not set: the e2e suite needs an API server (see tests/e2e/README.md)")
    return path.split(os.pathsep)


@pytest.fixture
def admin_credentials(admin_kubeconfig: list[str]) -> ClusterCredentials:
    """Loaded per test: an exec-plugin token refresh must not cross the tests' event loops."""
    return load_kubeconfig(admin_kubeconfig)


@dataclasses.dataclass(frozen=True)
class OperatorIdentity:
    """The chart's ServiceAccount and a token of it; `credentials()` as the operator in a pod would have."""

    admin: ClusterCredentials
    namespace: str
    service_account: str
    token: str

    def credentials(self) -> ClusterCredentials:
        # The admin's way to trust the server (CA), never the admin's client certificate.
        tls = dataclasses.replace(self.admin.tls, cert_file=None, key_file=None, cert_data=None, key_data=None)
        return ClusterCredentials(self.admin.server, tls=tls, token_source=StaticToken(self.token),
                                  default_namespace=self.namespace,
                                  origin=f"TokenRequest for ServiceAccount {self.namespace}/{self.service_account}")


@pytest.fixture(scope="session")
def operator_identity(admin_kubeconfig: list[str]) -> Iterator[OperatorIdentity]:
    """CRDs installed; the chart's ServiceAccount and RBAC applied; a token of that account."""
    from keyplane.testing.rbac import ChartUnavailableError, render_chart_rbac

    try:
        rbac = render_chart_rbac(namespace=CHART_NAMESPACE)
    except ChartUnavailableError as exc:
        pytest.fail(f"the e2e suite runs the operator under the chart's RBAC: {exc}")
    created: list[dict[str, Any]] = []
    identity = asyncio.run(_install(load_kubeconfig(admin_kubeconfig), rbac.objects, rbac.namespace,
                                    rbac.service_account, created))
    yield identity
    asyncio.run(_uninstall(load_kubeconfig(admin_kubeconfig), created))


async def _install(admin: ClusterCredentials, objects: tuple[dict[str, Any], ...], namespace: str,
                   service_account: str, created: list[dict[str, Any]]) -> OperatorIdentity:
    cluster = RealCluster(admin)
    try:
        await _refuse_a_running_operator(cluster, namespace)
        for crd in all_crds():
            await cluster.apply(crd)
        for crd in all_crds():
            await cluster.wait_for(lambda name=crd["metadata"]["name"]: _established(cluster, name), timeout=60)
        namespace_object = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        for obj in [namespace_object, *objects]:
            meta = obj["metadata"]
            if await cluster.get(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"]) is None:
                created.append(obj)
            await cluster.apply(obj)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": TOKEN_SECONDS}}
        issued = await cluster._request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token", json=body)
        return OperatorIdentity(admin, namespace, service_account, issued["status"]["token"])
    finally:
        await cluster.stop()


async def _uninstall(admin: ClusterCredentials, created: list[dict[str, Any]]) -> None:
    """Remove what the suite added (a chart installed beforehand keeps its objects)."""
    cluster = RealCluster(admin)
    try:
        for obj in reversed(created):
            meta = obj["metadata"]
            await cluster.delete(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
    finally:
        await cluster.stop()


async def _established(cluster: RealCluster, name: str) -> bool:
    obj = await cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name)
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


async def _refuse_a_running_operator(cluster: RealCluster, namespace: str) -> None:
    """An installed operator would reconcile the test objects too: two writers, flaky results."""
    for api_version, kind in (("apps/v1", "Deployment"), ("apps/v1", "StatefulSet")):
        try:
            workloads = await cluster.list(api_version, kind, namespace,
                                           label_selector="app.kubernetes.io/name=keyplane")
        except (ApiError, LookupError):
            continue
        for workload in workloads:
            if (workload.get("spec") or {}).get("replicas", 1):
                name = workload["metadata"]["name"]
                pytest.fail(f"Keyplane runs in the cluster ({kind} {namespace}/{name}): scale it to 0 for the"
                            f" e2e suite (kubectl -n {namespace} scale {kind.lower()}/{name} --replicas=0)")


@pytest.fixture
def fresh_namespaces(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's namespaces; the scenario's `NS` and the builders' defaults rebound to them."""
    from integration import builders

    suffix = secrets.token_hex(3)
    mapping = {name: f"{name}-{suffix}" for name in SCENARIO_NAMESPACES}
    scenario_globals = request.function.__globals__
    if scenario_globals.get("NS") in mapping:
        monkeypatch.setitem(scenario_globals, "NS", mapping[scenario_globals["NS"]])
    monkeypatch.setattr(builders, "NS", mapping[builders.NS])
    for function in vars(builders).values():
        if not inspect.isfunction(function):
            continue
        if function.__kwdefaults__ and function.__kwdefaults__.get("ns") in mapping:
            monkeypatch.setitem(function.__kwdefaults__, "ns", mapping[function.__kwdefaults__["ns"]])
        if function.__defaults__ and any(d in mapping for d in function.__defaults__ if isinstance(d, str)):
            defaults = tuple(mapping.get(d, d) if isinstance(d, str) else d for d in function.__defaults__)
            monkeypatch.setattr(function, "__defaults__", defaults)
    return mapping


@pytest.fixture
async def cluster(admin_credentials: ClusterCredentials, operator_identity: OperatorIdentity,
                  fresh_namespaces: dict[str, str]) -> AsyncIterator[RealCluster]:
    real = RealCluster(admin_credentials, fresh_namespaces)
    try:
        yield real
        await _delete_namespaces(real, list(fresh_namespaces.values()))
    finally:
        await real.stop()


async def _delete_namespaces(cluster: RealCluster, namespaces: list[str]) -> None:
    """Delete the test's Keyplane objects (finalizers released) and its namespaces; wait for neither."""
    for namespace in namespaces:
        if await cluster.get("v1", "Namespace", None, namespace) is None:
            continue
        for kind in KINDS:
            for item in await cluster.list(API_GROUP_VERSION, kind.kind, namespace):
                name = item["metadata"]["name"]
                if item["metadata"].get("finalizers"):
                    release = {"metadata": {"finalizers": None}}
                    await cluster.patch(API_GROUP_VERSION, kind.kind, namespace, name, release)
                await cluster.delete(API_GROUP_VERSION, kind.kind, namespace, name)
        await cluster.delete("v1", "Namespace", None, namespace)


@pytest.fixture
def keyplane_operator(cluster: RealCluster, operator_identity: OperatorIdentity) -> Any:
    """`async with keyplane_operator(**settings) as runtime:` the operator, as the chart's ServiceAccount."""
    import kopf

    from keyplane import handlers  # noqa: F401  (registers the handlers)
    from keyplane.testing import running_operator

    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[Any]:
        memo = kopf.Memo(settings=test_settings(**overrides), credentials=operator_identity.credentials())
        refusals = _RefusalLog()
        logging.getLogger().addHandler(refusals)
        try:
            async with running_operator(memo=memo, clusterwide=True, startup_timeout=60, shutdown_timeout=8.0):
                yield memo.runtime
        finally:
            logging.getLogger().removeHandler(refusals)
        # A real API server keeps no list of what it refused: the operator's own log lines do. A refusal
        # fails the test even when the scenario got through (a retry, another path).
        assert not refusals.lines, "the API server refused the operator:\n" + "\n".join(refusals.lines[:20])

    return run


class _RefusalLog(logging.Handler):
    """Collects the operator's (Kopf's and Keyplane's) log lines about a 401 or 403 from the API server."""

    PATTERN = re.compile(r"\b(401|403)\b|Unauthorized|[Ff]orbidden")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name.startswith(("kopf", "keyplane")) and self.PATTERN.search(message):
            self.lines.append(f"{record.name}: {message[:300]}")

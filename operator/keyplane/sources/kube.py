"""The operator's own Kubernetes API access: a small async adapter over httpx.

Kopf watches; this adapter does the few direct reads and writes the reconcile needs (owned Secrets,
referenced ConfigMaps and Secrets, status, Events, Deployments). Its credentials are the same
`ClusterCredentials` object Kopf's login handler hands to Kopf: the token is re-read as its source
rotates it, and a 401 fetches it again and retries once. Network errors and timeouts surface as
`KubeUnavailable`, a `KubeError`, like every other failure the callers already handle.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import httpx

from .. import __version__
from .credentials import ClusterCredentials, CredentialsError
from .fairness import FairGate
from .kubeconfig import load_cluster_credentials

# The errors, the protocol and the paths live in objectstore (no httpx there); importable from here too.
from .objectstore import KubeError as KubeError
from .objectstore import KubeUnavailable as KubeUnavailable
from .objectstore import ObjectStore as ObjectStore
from .objectstore import namespace_of as namespace_of
from .objectstore import resource_path as resource_path

MAX_CONNECTIONS = 20


class ClusterAuth(httpx.Auth):
    """Sends the credentials' current token; on a 401, fetches it again once and retries the request."""

    def __init__(self, credentials: ClusterCredentials) -> None:
        self.credentials = credentials

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        sent = await self.credentials.authorization()
        if sent is not None:
            request.headers["Authorization"] = sent
        response = yield request
        if response.status_code != 401 or sent is None:
            return
        fresh = await self.credentials.refresh(rejected=sent)
        if fresh is not None:
            request.headers["Authorization"] = fresh
            yield request


class KubeAPI:
    """Async access to one API server, authenticated by `ClusterCredentials` (shared with Kopf)."""

    def __init__(self, credentials: ClusterCredentials, *, timeout: float = 30.0) -> None:
        self.credentials = credentials
        # Called with (method, HTTP status or None when no answer came) after every request (metrics).
        self.on_response: Callable[[str, int | None], None] | None = None
        # Requests beyond the pool wait here, admitted round-robin across namespaces (sources/fairness.py):
        # one namespace's burst cannot make another namespace's few writes wait behind all of it.
        self._gate = FairGate(MAX_CONNECTIONS)
        self._client = httpx.AsyncClient(
            base_url=credentials.server,
            verify=credentials.ssl_context(),
            auth=ClusterAuth(credentials),
            timeout=timeout,
            trust_env=False,  # as Kopf's session: the API server directly, whatever HTTPS_PROXY says
            # A bounded pool: a burst of writes queues here instead of opening (and dropping) connections.
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
            headers={"User-Agent": f"keyplane/{__version__}", "Accept": "application/json"},
        )

    @classmethod
    def from_environment(cls) -> KubeAPI:
        """$KUBECONFIG, else the pod's ServiceAccount, else ~/.kube/config (see keyplane.sources.kubeconfig)."""
        return cls(load_cluster_credentials())

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any] | None:
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            async with self._gate.slot(namespace_of(path)):
                response = await self._client.request(method, path, json=json, params=params, headers=headers)
        except (httpx.TransportError, CredentialsError) as exc:
            if self.on_response is not None:
                self.on_response(method, None)
            if isinstance(exc, CredentialsError):
                raise KubeUnavailable(f"{method} {path}: {exc}") from exc
            # connect/read errors, timeouts: callers retry a KubeError
            raise KubeUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if self.on_response is not None:
            self.on_response(method, response.status_code)
        if response.status_code == 404 and method == "GET":
            return None
        if response.status_code >= 400:
            try:
                message = str(response.json().get("message", ""))
            except ValueError:
                message = response.text[:200]
            raise KubeError(response.status_code, message or response.reason_phrase)
        if not response.content:
            return None
        body = response.json()
        return body if isinstance(body, dict) else None

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.request("GET", resource_path(api_version, plural, namespace, name))

    async def list(
        self, api_version: str, plural: str, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        body = await self.request("GET", resource_path(api_version, plural, namespace), params=params)
        return list((body or {}).get("items") or [])

    async def create(self, api_version: str, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", resource_path(api_version, plural, namespace), json=body) or {}

    async def patch(
        self, api_version: str, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        path = resource_path(api_version, plural, namespace, name)
        return await self.request("PATCH", path, json=patch, content_type="application/merge-patch+json") or {}

    async def patch_status(
        self, api_version: str, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        path = resource_path(api_version, plural, namespace, name) + "/status"
        body = {"status": status}
        return await self.request("PATCH", path, json=body, content_type="application/merge-patch+json") or {}

    async def delete(self, api_version: str, plural: str, namespace: str, name: str) -> None:
        try:
            await self.request("DELETE", resource_path(api_version, plural, namespace, name))
        except KubeError as exc:
            if exc.status != 404:
                raise

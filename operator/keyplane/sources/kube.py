"""The operator's own Kubernetes API access: a small async adapter over aiohttp.

Kopf watches; this adapter does the few direct reads and writes the reconcile needs (owned Secrets,
referenced ConfigMaps and Secrets, status, Events, Deployments). Its credentials are the same
`ClusterCredentials` object Kopf's login handler hands to Kopf: the token is re-read as its source
rotates it, and a 401 fetches it again and retries once. Network errors and timeouts surface as
`KubeUnavailable`, a `KubeError`, like every other failure the callers already handle.

aiohttp, as Kopf uses: under a burst httpx's connection pool cost a third of the operator's CPU (it
polls every pooled socket on each request's every state change), several times what Kopf's own requests
cost (bench/README.md).
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from .. import __version__
from .credentials import ClusterCredentials, CredentialsError
from .fairness import FairGate
from .kubeconfig import load_cluster_credentials

# The errors, the protocol and the paths live in objectstore (no HTTP client there); importable from here too.
from .objectstore import KubeError as KubeError
from .objectstore import KubeUnavailable as KubeUnavailable
from .objectstore import ObjectStore as ObjectStore
from .objectstore import namespace_of as namespace_of
from .objectstore import resource_path as resource_path

MAX_CONNECTIONS = 20
# Connections beyond the pool for a namespace with no request in flight (sources/fairness.py, FairGate).
QUIET_NAMESPACE_RESERVE = 4


class KubeAPI:
    """Async access to one API server, authenticated by `ClusterCredentials` (shared with Kopf)."""

    def __init__(self, credentials: ClusterCredentials, *, timeout: float = 30.0) -> None:
        self.credentials = credentials
        # Called with (method, HTTP status or None when no answer came) after every request (metrics).
        self.on_response: Callable[[str, int | None], None] | None = None
        # Requests beyond the pool wait here; the namespace with the fewest waiting goes first (sources/fairness.py):
        # one namespace's burst cannot make another namespace's few writes wait behind all of it.
        self._gate = FairGate(MAX_CONNECTIONS, QUIET_NAMESPACE_RESERVE)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_environment(cls) -> KubeAPI:
        """$KUBECONFIG, else the pod's ServiceAccount, else ~/.kube/config (see keyplane.sources.kubeconfig)."""
        return cls(load_cluster_credentials())

    def _open_session(self) -> aiohttp.ClientSession:
        """Made at the first request: an aiohttp session belongs to the event loop it is made in."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # A bounded pool: a burst of writes queues (in the gate) instead of opening connections.
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS + QUIET_NAMESPACE_RESERVE,
                                               ssl=self.credentials.ssl_context()),
                timeout=self._timeout,
                trust_env=False,  # as Kopf's session: the API server directly, whatever HTTPS_PROXY says
                headers={"User-Agent": f"keyplane/{__version__}", "Accept": "application/json"},
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _send(self, method: str, path: str, data: bytes | None, params: Mapping[str, str] | None,
                    headers: dict[str, str]) -> tuple[int, str, bytes]:
        """One request; sent again once, with a token fetched anew, if the API server refused the one sent."""
        session = self._open_session()
        url = self.credentials.server + path
        sent = await self.credentials.authorization()
        if sent is not None:
            headers["Authorization"] = sent
        answer = await _exchange(session, method, url, data, params, headers)
        if answer[0] != 401 or sent is None:
            return answer
        fresh = await self.credentials.refresh(rejected=sent)
        if fresh is None:
            return answer
        headers["Authorization"] = fresh
        return await _exchange(session, method, url, data, params, headers)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any] | None:
        data = None if json is None else jsonlib.dumps(json, separators=(",", ":")).encode()
        headers = {} if data is None else {"Content-Type": content_type or "application/json"}
        try:
            async with self._gate.slot(namespace_of(path)):
                status, reason, content = await self._send(method, path, data, params, headers)
        except (aiohttp.ClientError, TimeoutError, CredentialsError) as exc:
            if self.on_response is not None:
                self.on_response(method, None)
            if isinstance(exc, CredentialsError):
                raise KubeUnavailable(f"{method} {path}: {exc}") from exc
            # connect/read errors, timeouts: callers retry a KubeError
            raise KubeUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if self.on_response is not None:
            self.on_response(method, status)
        if status == 404 and method == "GET":
            return None
        if status >= 400:
            try:
                message = str(jsonlib.loads(content).get("message", ""))
            except (ValueError, AttributeError):
                message = content[:200].decode(errors="replace")
            raise KubeError(status, message or reason)
        if not content:
            return None
        body = jsonlib.loads(content)
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


async def _exchange(session: aiohttp.ClientSession, method: str, url: str, data: bytes | None,
                    params: Mapping[str, str] | None, headers: Mapping[str, str]) -> tuple[int, str, bytes]:
    """Status, reason and body of one request; the connection goes back to the pool once the body is read."""
    async with session.request(method, url, data=data, params=params, headers=headers) as response:
        return response.status, response.reason or "", await response.read()

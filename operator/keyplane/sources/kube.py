"""The operator's own Kubernetes API access: a small async adapter over httpx.

Kopf watches; this adapter does the few direct reads and writes the reconcile needs (owned Secrets,
referenced ConfigMaps and Secrets, status, Events, Deployments). Credentials come from the kubernetes
client's config loaders (in-cluster service account or kubeconfig), refreshed on every request so a
rotated service-account token is picked up.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from .. import __version__


class KubeError(Exception):
    """An API error; `status` is the HTTP code (409 conflict, 404 gone, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ObjectStore(Protocol):
    """The object reads and writes the observe layer needs; the API or, for render, files in memory."""

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def create(self, api_version: str, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def patch(
        self, api_version: str, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def delete(self, api_version: str, plural: str, namespace: str, name: str) -> None: ...


def resource_path(api_version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = prefix + (f"/namespaces/{quote(namespace)}" if namespace else "") + f"/{plural}"
    return path + (f"/{quote(name)}" if name else "")


class KubeAPI:
    """Async access to one API server."""

    def __init__(
        self,
        host: str,
        *,
        verify: ssl.SSLContext | bool = True,
        token_provider: Any = None,
        cert: tuple[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._token_provider = token_provider
        # Called with (method, HTTP status or None when no answer came) after every request (metrics).
        self.on_response: Callable[[str, int | None], None] | None = None
        self._client = httpx.AsyncClient(
            base_url=host.rstrip("/"),
            verify=verify,
            cert=cert,
            timeout=timeout,
            # A bounded pool: a burst of writes queues here instead of opening (and dropping) connections.
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=20),
            headers={"User-Agent": f"keyplane/{__version__}", "Accept": "application/json"},
        )

    @classmethod
    def from_environment(cls) -> KubeAPI:
        """In-cluster config when running in a pod, else $KUBECONFIG / ~/.kube/config."""
        from kubernetes import client, config  # imported here: only the operator needs it

        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
        verify: ssl.SSLContext | bool = True
        if not configuration.verify_ssl:
            verify = False
        elif configuration.ssl_ca_cert:
            verify = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        cert = (configuration.cert_file, configuration.key_file or configuration.cert_file) \
            if configuration.cert_file else None

        def token() -> str | None:
            value = configuration.get_api_key_with_prefix("authorization")
            return str(value) if value else None

        return cls(configuration.host, verify=verify, token_provider=token, cert=cert)

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
        headers = {}
        if self._token_provider is not None and (value := self._token_provider()):
            headers["Authorization"] = value
        if content_type:
            headers["Content-Type"] = content_type
        try:
            response = await self._client.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError:
            if self.on_response is not None:
                self.on_response(method, None)
            raise
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

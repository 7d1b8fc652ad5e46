"""What the observe and write code needs of the Kubernetes API, without an HTTP client: the errors, the
`ObjectStore` protocol and API paths.

Implemented by `keyplane.sources.kube.KubeAPI` (aiohttp, the operator) and `keyplane.render.MemoryStore`
(files): render and the CLI import this module, not an HTTP client (~40 ms of start-up).
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote


class KubeError(Exception):
    """An API error; `status` is the HTTP code (409 conflict, 404 gone, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class KubeUnavailable(KubeError):
    """The API server could not be reached or asked (network error, timeout, no credentials): status 0."""

    def __init__(self, message: str) -> None:
        super().__init__(0, f"API server unavailable: {message}")
        self.args = (self.message,)


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


def namespace_of(path: str) -> str:
    """The namespace an API path is in ("" for cluster-scoped paths): the unit of request fairness."""
    _, found, rest = path.partition("/namespaces/")
    return rest.split("/", 1)[0] if found else ""

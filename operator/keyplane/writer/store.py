"""The object API the writer needs: the observe layer's ObjectStore plus list, delete and status."""

from __future__ import annotations

from typing import Any, Protocol

from ..sources.objectstore import ObjectStore


class ClusterStore(ObjectStore, Protocol):
    """Implemented by `sources.kube.KubeAPI` (the API server) and `render.MemoryStore` (files)."""

    async def list(
        self, api_version: str, plural: str, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]: ...

    async def patch_status(
        self, api_version: str, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def delete(self, api_version: str, plural: str, namespace: str, name: str) -> None: ...

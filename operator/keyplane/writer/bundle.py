"""Writing the bundle Secret: only when its content changed, confirmed by a read when it did not."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..reconcile.bundle import BUNDLE_HASH_ANNOTATION, bundle_secret, bundle_sha256
from ..reconcile.model import Snapshot
from ..sources.objectstore import KubeError

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger("keyplane.operator")


async def write_bundle(
    runtime: Runtime, namespace: str, snaps: list[Snapshot], data: bytes | None, bundle: dict[str, Any] | None
) -> str | None:
    """Create, patch or delete the namespace's bundle Secret so it holds `data`; the new digest when it
    wrote one (the consumers are then rolled: `roll_consumers`)."""
    kube, name = runtime.kube, runtime.settings.bundle_secret_name
    if data is None:
        if runtime.bundle_hashes.get(namespace) is not None:
            await kube.delete("v1", "secrets", namespace, name)
            runtime.count_bundle_write("delete")
            log.info("namespace %s: no Keyplane objects left, bundle Secret %s deleted", namespace, name)
        runtime.bundles[namespace] = None
        runtime.bundle_hashes[namespace] = None
        runtime.bundle_sizes.pop(namespace, None)
        return None
    digest = bundle_sha256(data)
    if digest == runtime.bundle_hashes.get(namespace):
        # Unchanged content: a read (never a write) confirms the Secret is still there, since the
        # operator does not watch Secrets and garbage collection or a human may have removed it.
        current = await kube.get("v1", "secrets", namespace, name)
        annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
        if annotations.get(BUNDLE_HASH_ANNOTATION) == digest:
            runtime.bundle_sizes[namespace] = len(data)
            return None
        runtime.bundle_hashes[namespace] = digest if current is not None else None
    owners = [s.owner_reference(controller=False) for s in sorted(snaps, key=lambda s: (s.kind, s.name))
              if not s.deleting and s.uid]
    manifest = bundle_secret(name, namespace, data, owners)
    operation = "update"
    if runtime.bundle_hashes.get(namespace) is None:
        try:
            await kube.create("v1", "secrets", namespace, manifest)
            operation = "create"
        except KubeError as exc:
            if exc.status != 409:
                raise
            await kube.patch("v1", "secrets", namespace, name, _bundle_patch(manifest))
    else:
        await kube.patch("v1", "secrets", namespace, name, _bundle_patch(manifest))
    runtime.count_bundle_write(operation)
    runtime.bundles[namespace] = bundle
    runtime.bundle_hashes[namespace] = digest
    runtime.bundle_sizes[namespace] = len(data)
    log.info("namespace %s: bundle Secret %s written (sha256 %s)", namespace, name, digest[:12])
    return digest


def _bundle_patch(manifest: dict[str, Any]) -> dict[str, Any]:
    meta = manifest["metadata"]
    return {
        "metadata": {"labels": meta["labels"], "annotations": meta["annotations"],
                     "ownerReferences": meta["ownerReferences"]},
        "data": manifest["data"],
    }

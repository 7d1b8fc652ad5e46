"""Rolling the Deployments that consume the bundle, so apps that read config only at start restart."""

from __future__ import annotations

import logging

from ..reconcile.bundle import BUNDLE_HASH_ANNOTATION, CONSUME_LABEL
from .store import ClusterStore

log = logging.getLogger("keyplane.operator")


async def roll_consumers(kube: ClusterStore, namespace: str, digest: str) -> None:
    """Stamp the bundle hash on consume-identity Deployments' pod templates (a no-op when already there)."""
    deployments = await kube.list("apps/v1", "deployments", namespace, label_selector=f"{CONSUME_LABEL}=true")
    for deployment in deployments:
        template_meta = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
        if (template_meta.get("annotations") or {}).get(BUNDLE_HASH_ANNOTATION) == digest:
            continue
        patch = {"spec": {"template": {"metadata": {"annotations": {BUNDLE_HASH_ANNOTATION: digest}}}}}
        await kube.patch("apps/v1", "deployments", namespace, deployment["metadata"]["name"], patch)
        log.info("namespace %s: Deployment %s rolled for bundle %s", namespace, deployment["metadata"]["name"],
                 digest[:12])

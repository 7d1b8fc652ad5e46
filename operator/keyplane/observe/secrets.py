"""Owned Secrets, read by name (the operator never watches Secrets) and written only when needed."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

from ..reconcile.bundle import MANAGED_BY, MANAGED_BY_LABEL
from ..sources.objectstore import KubeError, ObjectStore

OWNER_KIND_LABEL = "keyplane.dev/owner-kind"
OWNER_NAME_LABEL = "keyplane.dev/owner-name"


def managed_labels(kind: str, name: str) -> dict[str, str]:
    """Labels of an owned Secret: who manages it and for which object (never the owner's own labels)."""
    return {MANAGED_BY_LABEL: MANAGED_BY, OWNER_KIND_LABEL: kind, OWNER_NAME_LABEL: name[:63]}


def decode_secret_value(value: Any) -> str:
    try:
        return base64.b64decode(str(value)).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def encode_data(data: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())}


def decoded_data(secret: dict[str, Any]) -> dict[str, str]:
    return {k: decode_secret_value(v) for k, v in (secret.get("data") or {}).items()}


async def ensure_secret(
    store: ObjectStore,
    namespace: str,
    name: str,
    *,
    render: Callable[[], Awaitable[dict[str, str]]],
    usable: Callable[[dict[str, str]], bool],
    secret_type: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    owner: dict[str, Any] | None,
) -> dict[str, Any]:
    """Return the Secret, adopting an existing usable one as is, replacing unusable data, or creating it.

    A create that loses a race (409) re-reads and adopts the winner's Secret, so two writers never
    end up with two different keys or tokens.
    """
    existing = await store.get("v1", "secrets", namespace, name)
    if existing is not None and usable(decoded_data(existing)):
        return await _adopt(store, existing, owner)
    if existing is not None:
        return await store.patch("v1", "secrets", namespace, name, {"data": encode_data(await render())})
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": secret_type,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            **({"ownerReferences": [owner]} if owner else {}),
        },
        "data": encode_data(await render()),
    }
    try:
        return await store.create("v1", "secrets", namespace, body)
    except KubeError as exc:
        if exc.status != 409:
            raise
        winner = await store.get("v1", "secrets", namespace, name)
        if winner is None:
            raise
        return winner


async def _adopt(store: ObjectStore, secret: dict[str, Any], owner: dict[str, Any] | None) -> dict[str, Any]:
    """Point the controller ownerReference at the current object (after a delete-and-recreate)."""
    if owner is None:
        return secret
    refs = (secret.get("metadata") or {}).get("ownerReferences") or []
    if any(r.get("uid") == owner.get("uid") for r in refs):
        return secret
    others = [r for r in refs if not r.get("controller")]
    meta = secret["metadata"]
    return await store.patch("v1", "secrets", meta["namespace"], meta["name"],
                             {"metadata": {"ownerReferences": [*others, owner]}})

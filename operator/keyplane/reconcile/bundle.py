"""The identity bundle: the namespace's identity setup as one deterministic JSON document.

Same inputs give byte-identical output (sorted keys, fixed separators, a trailing newline), so the
writer can compare bytes and skip the write; the SHA-256 of those bytes names the version.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..contract import BUNDLE_API_VERSION

BUNDLE_KEY = "identity.json"
BUNDLE_HASH_ANNOTATION = "keyplane.dev/bundle-sha256"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "keyplane"
CONSUME_LABEL = "keyplane.dev/consume-identity"


def build_bundle(
    roles: tuple[str, ...],
    identity_providers: Mapping[str, dict[str, Any]],
    domains: Mapping[str, dict[str, Any]],
    scim: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": BUNDLE_API_VERSION,
        "roles": list(roles),
        "identityProviders": dict(identity_providers),
        "domains": dict(domains),
        "scim": dict(scim),
    }


def serialize_bundle(bundle: Mapping[str, Any]) -> bytes:
    return (json.dumps(bundle, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def bundle_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_bundle_secret(secret: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The bundle held by an existing Secret, or None when absent or unreadable (then nothing is kept)."""
    if not secret:
        return None
    raw = (secret.get("data") or {}).get(BUNDLE_KEY)
    text = base64.b64decode(raw).decode() if raw else (secret.get("stringData") or {}).get(BUNDLE_KEY)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value.get("apiVersion") == BUNDLE_API_VERSION else None


def bundle_secret(
    name: str, namespace: str, data: bytes, owners: list[dict[str, Any]]
) -> dict[str, Any]:
    """The Secret manifest holding the bundle; owners are every contributing object (GC after the last)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {BUNDLE_HASH_ANNOTATION: bundle_sha256(data)},
            "ownerReferences": owners,
        },
        "data": {BUNDLE_KEY: base64.b64encode(data).decode()},
    }

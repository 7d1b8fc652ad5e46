"""Observe a ScimConnection: read, issue, adopt or rotate its token Secret (one write per step)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..api.common import parse_duration
from ..api.scimconnection import ScimConnectionSpec
from ..reconcile.model import Event, Snapshot
from ..reconcile.scimconnection import token_secret_name
from ..reconcile.scimtoken import ROTATE_ANNOTATION, TokenPlan, TokenSecret, TokenState, plan_token
from ..sources.objectstore import KubeError, ObjectStore
from .secrets import encode_data, managed_labels


async def observe_scim_connection(
    snap: Snapshot, store: ObjectStore, now: datetime
) -> tuple[TokenState | None, list[Event]]:
    """The token state after making the Secret what the spec and annotations ask for."""
    name = token_secret_name(snap)
    secret = await store.get("v1", "secrets", snap.namespace, name)
    existing = TokenSecret.from_secret(secret) if secret is not None else None
    try:
        spec = ScimConnectionSpec.model_validate(snap.spec)
    except ValidationError:
        return (existing.state() if existing else None), []  # invalid spec: touch nothing

    had_token = bool(snap.status.get("tokenIssuedAt"))
    plan = plan_token(
        existing,
        rotation_interval=parse_duration(spec.token.rotationInterval),
        overlap=parse_duration(spec.token.overlap),
        rotate_request=snap.annotations.get(ROTATE_ANNOTATION),
        now=now,
        reissue=had_token and secret is None,
    )
    owner = snap.owner_reference() if spec.token.deletionPolicy == "Delete" else None
    events = [Event("Warning" if plan.reason == "TokenReissued" else "Normal", plan.reason, plan.message)] \
        if plan.reason else []
    if secret is None:
        created, adopted = await _create_token_secret(store, snap, name, plan, owner)
        return (plan.secret.state(), events) if created else (adopted, [])
    patch = _token_secret_patch(secret, plan, owner)
    if patch:
        await store.patch("v1", "secrets", snap.namespace, name, patch)
    return plan.secret.state(), events


async def _create_token_secret(
    store: ObjectStore, snap: Snapshot, name: str, plan: TokenPlan, owner: dict[str, Any] | None
) -> tuple[bool, TokenState | None]:
    """Create the token Secret: (True, None), or (False, the state of the Secret someone else created first)."""
    data, annotations = plan.secret.to_secret_fields()
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": snap.namespace,
            "labels": managed_labels("ScimConnection", snap.name),
            "annotations": annotations,
            **({"ownerReferences": [owner]} if owner else {}),
        },
        "data": encode_data(data),
    }
    try:
        await store.create("v1", "secrets", snap.namespace, body)
    except KubeError as exc:
        if exc.status != 409:
            raise
        # Someone else (another replica, a restore) wrote it first: adopt theirs, never overwrite.
        winner = await store.get("v1", "secrets", snap.namespace, name)
        adopted = TokenSecret.from_secret(winner) if winner else None
        return False, adopted.state() if adopted else None
    return True, None


def _token_secret_patch(secret: dict[str, Any], plan: TokenPlan, owner: dict[str, Any] | None) -> dict[str, Any]:
    """The merge patch that makes an existing token Secret match the plan and the deletion policy."""
    data, annotations = plan.secret.to_secret_fields()
    patch: dict[str, Any] = {}
    if plan.write:
        # Keys absent from the new content (an expired previous token) are removed with null.
        old_keys = set((secret.get("data") or {}).keys())
        patch["data"] = {**{k: None for k in old_keys - set(data)}, **encode_data(data)}
        if annotations:
            patch["metadata"] = {"annotations": annotations}
    refs = (secret.get("metadata") or {}).get("ownerReferences") or []
    if owner is not None and not any(r.get("uid") == owner["uid"] for r in refs):
        patch.setdefault("metadata", {})["ownerReferences"] = [owner]
    if owner is None and any(r.get("kind") == "ScimConnection" for r in refs):
        patch.setdefault("metadata", {})["ownerReferences"] = [r for r in refs if r.get("kind") != "ScimConnection"]
    return patch

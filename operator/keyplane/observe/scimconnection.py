"""Observe a ScimConnection: read, issue, adopt or rotate its token Secret (one write per step)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..api.common import parse_duration
from ..api.scimconnection import ScimConnectionSpec
from ..reconcile.model import Event, Snapshot
from ..reconcile.scimconnection import token_secret_name
from ..reconcile.scimtoken import ROTATE_ANNOTATION, TokenSecret, TokenState, plan_token
from ..sources.kube import KubeError, ObjectStore
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
    data, annotations = plan.secret.to_secret_fields()
    if secret is None:
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
            return (adopted.state() if adopted else None), []
        return plan.secret.state(), events

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
    if patch:
        await store.patch("v1", "secrets", snap.namespace, name, patch)
    return plan.secret.state(), events

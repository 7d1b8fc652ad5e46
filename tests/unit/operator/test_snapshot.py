"""Snapshots keep what the reconcile reads, not Kopf's bookkeeping (kept per object in the indexes)."""

from __future__ import annotations

import json

from keyplane.reconcile.model import Snapshot
from keyplane.reconcile.scimtoken import ROTATE_ANNOTATION


def test_only_keyplanes_own_annotations_are_copied_into_snapshots() -> None:
    """Not Kopf's bookkeeping, nor kubectl's copy of the manifest: every snapshot is kept for the process's life."""
    spec = {"identityProviderRef": {"name": "okta"}}
    body = {
        "kind": "ScimConnection",
        "metadata": {"name": "scim", "namespace": "ns", "uid": "u1", "generation": 2, "annotations": {
            "kopf.keyplane.dev/last-handled-configuration": json.dumps({"spec": spec}),
            "kopf.keyplane.dev/scim_connection_changed": '{"started":"2026-01-01T00:00:00Z"}',
            ROTATE_ANNOTATION: "2026-01-01T00:00:00Z",
            "example.com/owner": "team-a",
            "kubectl.kubernetes.io/last-applied-configuration": json.dumps({"kind": "ScimConnection", "spec": spec}),
        }},
        "spec": spec,
    }
    snap = Snapshot.from_body(body)
    assert dict(snap.annotations) == {ROTATE_ANNOTATION: "2026-01-01T00:00:00Z"}
    assert snap.spec == spec and snap.generation == 2


def test_annotations_that_are_not_a_mapping_read_as_none() -> None:
    snap = Snapshot.from_body({"kind": "SSODomain", "metadata": {"name": "d", "annotations": ["x"]}})
    assert dict(snap.annotations) == {}

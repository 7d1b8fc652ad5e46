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


def test_snapshots_of_separately_decoded_events_share_their_keys_and_short_values() -> None:
    """Every object's snapshot lives in the indexes: thousands of copies of "type", "status", "True"... add up."""
    event = json.dumps({"kind": "SSODomain", "metadata": {"name": "d", "namespace": "ns"},
                        "spec": {"domain": "example.com", "identityProviderRef": {"name": "okta"}},
                        "status": {"conditions": [{"type": "Ready", "status": "True", "message": "x" * 200}]}})
    first, second = (Snapshot.from_body(json.loads(event)) for _ in range(2))
    key_of = lambda snap: next(k for k in snap.spec if k == "identityProviderRef")  # noqa: E731
    assert key_of(first) is key_of(second)
    one, other = first.status["conditions"][0], second.status["conditions"][0]
    assert one["status"] is other["status"] and one["type"] is other["type"]
    assert one == other

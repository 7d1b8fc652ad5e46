"""Kopf's indexes keep every object for the life of the process: packed, and unpacked only when read."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from types import SimpleNamespace
from typing import Any

from keyplane.handlers.kopf_handlers import idp_index, scim_index, ssod_index
from keyplane.packed import PackedSnapshot, unpacked
from keyplane.reconcile.model import Snapshot
from keyplane.reconcile.scimtoken import ROTATE_ANNOTATION
from keyplane.runtime import Runtime
from keyplane.settings import Settings


def _conditions(i: int) -> list[dict[str, Any]]:
    return [{"type": kind, "status": "True", "reason": kind, "message": f"tenant-{i:04d}.example.com is {kind}.",
             "lastTransitionTime": "2026-12-01T20:29:27Z", "observedGeneration": 1}
            for kind in ("Ready", "Reconciling", "Stalled", "DomainsVerified", "IdentityProviderReady")]


def _body(i: int) -> dict[str, Any]:
    return {"apiVersion": "keyplane.dev/v1alpha1", "kind": "SSODomain",
            "metadata": {"name": f"ssod-{i:04d}", "namespace": "tenant", "uid": f"uid-{i}", "generation": 3,
                         "creationTimestamp": "2026-12-01T20:00:00Z",
                         "annotations": {ROTATE_ANNOTATION: "now", "example.com/team": "a"}},
            "spec": {"domains": [f"tenant-{i:04d}.example.com"], "identityProviderRef": {"name": "okta"}},
            "status": {"observedGeneration": 3, "conditions": _conditions(i)}}


def test_an_unpacked_snapshot_is_the_snapshot_that_was_packed() -> None:
    snap = Snapshot.from_body(_body(1))
    assert PackedSnapshot.of(snap).unpack() == snap
    deleting = Snapshot.from_body({**_body(2), "metadata": {**_body(2)["metadata"], "deletionTimestamp": "x"}})
    assert PackedSnapshot.of(deleting).unpack() == deleting and deleting.deleting


def test_a_reader_cannot_change_what_the_index_keeps() -> None:
    packed = PackedSnapshot.of(Snapshot.from_body(_body(1)))
    first = packed.unpack()
    first.status["conditions"][0]["status"] = "False"  # type: ignore[index]
    first.spec["domains"].append("evil.example.com")  # type: ignore[attr-defined]
    assert packed.unpack() == Snapshot.from_body(_body(1))


def test_the_packed_form_keeps_less_than_half_of_the_snapshot() -> None:
    """What the index keeps per object (SSODomain: ~3.3 KB as dicts, ~0.7 KB packed; bench/README.md)."""
    raw = [json.dumps(_body(i)) for i in range(200)]

    def kept(make: Any) -> int:
        tracemalloc.start()
        try:
            held = [make(Snapshot.from_body(json.loads(r))) for r in raw]
            size = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert len(held) == len(raw)
        return size

    assert kept(PackedSnapshot.of) * 2 < kept(lambda snap: snap)


def test_the_index_handlers_keep_packed_snapshots_and_readers_get_snapshots() -> None:
    runtime = Runtime(settings=Settings(), kube=None, cache=None, resolver=None)  # type: ignore[arg-type]
    memo = SimpleNamespace(runtime=runtime)
    body = _body(7)
    entries = {}
    for handler, kind in ((idp_index, "IdentityProvider"), (ssod_index, "SSODomain"), (scim_index, "ScimConnection")):
        kind_body = {**body, "kind": kind}
        entry = asyncio.run(handler(body=kind_body, namespace="tenant", memo=memo))
        assert set(entry) == {"tenant"} and isinstance(entry["tenant"], PackedSnapshot)
        entries[handler.__name__] = {"tenant": [entry["tenant"]]}
        assert unpacked(entry["tenant"]) == Snapshot.from_body(kind_body)
    runtime.indexes.update(entries)
    assert sorted(s.kind for s in runtime.snapshots("tenant")) == ["IdentityProvider", "SSODomain", "ScimConnection"]
    assert all(type(s) is Snapshot for s in runtime.snapshots("tenant"))

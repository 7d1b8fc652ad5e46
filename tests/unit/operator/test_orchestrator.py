"""The one pass (orchestrator.observe + flush_namespace) and the order in which its writes land.

Promise (DESIGN.md, "What a user sees, in order"): configuration first (SP metadata ConfigMaps, the
bundle Secret), then statuses, then Events; so a status never reports what the bundle does not carry.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

from keyplane_op_helpers import NOW, NS

from keyplane.orchestrator import flush_namespace, observe
from keyplane.reconcile.model import Snapshot
from keyplane.render import MemoryStore
from keyplane.runtime import Runtime
from keyplane.settings import Settings

SETTINGS = Settings()


class RecordingStore(MemoryStore):
    """The in-memory store, noting each write and what the bundle held when a status was written."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str, str]] = []
        self.bundle_at_status: list[dict[str, Any] | None] = []

    async def create(self, api_version: str, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.log.append(("create", plural, body["metadata"]["name"]))
        return await super().create(api_version, plural, namespace, body)

    async def patch(
        self, api_version: str, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        if "status" in patch:
            self.log.append(("status", plural, name))
            self.bundle_at_status.append(self.bundle(namespace))
        else:
            self.log.append(("patch", plural, name))
        return await super().patch(api_version, plural, namespace, name, patch)

    def bundle(self, namespace: str) -> dict[str, Any] | None:
        secret = self.objects.get(self.key("v1", "secrets", namespace, SETTINGS.bundle_secret_name))
        return json.loads(base64.b64decode(secret["data"]["identity.json"])) if secret else None


def scim_body(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "keyplane.dev/v1alpha1", "kind": "ScimConnection",
            "metadata": {"name": "okta", "namespace": NS, "uid": "uid-okta", "generation": 1,
                         "annotations": annotations or {}},
            "spec": {"token": {"overlap": "1h"}}}


def runtime_with(store: RecordingStore, body: dict[str, Any], clock: list[Any]) -> tuple[Runtime, Snapshot]:
    store.objects[store.key("keyplane.dev/v1alpha1", "scimconnections", NS, "okta")] = body
    snap = Snapshot.from_body(body)
    runtime = Runtime(settings=SETTINGS, kube=store, cache=None, resolver=None,  # type: ignore[arg-type]
                      clock=lambda: clock[0])
    runtime.indexes["scim_index"] = {NS: [snap]}
    return runtime, snap


async def test_a_rotation_writes_the_bundle_before_the_status_that_reports_it() -> None:
    store, clock = RecordingStore(), [NOW]
    runtime, snap = runtime_with(store, scim_body(), clock)
    await observe(runtime, snap)
    await flush_namespace(runtime, NS)

    clock[0] = NOW + timedelta(hours=1)
    body = store.objects[store.key("keyplane.dev/v1alpha1", "scimconnections", NS, "okta")]
    body["metadata"]["annotations"] = {"keyplane.dev/rotate-token": "now"}
    rotated = Snapshot.from_body(body)
    runtime.indexes["scim_index"] = {NS: [rotated]}
    store.log.clear()
    store.bundle_at_status.clear()
    await observe(runtime, rotated)
    await flush_namespace(runtime, NS)

    writes = [entry for entry in store.log if entry[1] != "events"]
    assert writes == [
        ("patch", "secrets", "okta-scim-token"),  # observe: the new token, pasteable at once
        ("patch", "secrets", SETTINGS.bundle_secret_name),  # then the configuration
        ("status", "scimconnections", "okta"),  # then the status that reports it
    ]
    status = store.objects[store.key("keyplane.dev/v1alpha1", "scimconnections", NS, "okta")]["status"]
    (bundle,) = store.bundle_at_status
    assert bundle is not None
    hashes = bundle["scim"]["okta"]["tokenHashes"]
    assert len(hashes) == 2 and hashes[1]["notAfter"] == status["previousTokenExpiresAt"]


async def test_a_new_object_is_in_the_bundle_before_its_status_says_ready() -> None:
    store, clock = RecordingStore(), [NOW]
    runtime, snap = runtime_with(store, scim_body(), clock)
    await observe(runtime, snap)
    await flush_namespace(runtime, NS)
    assert [e for e in store.log if e[1] != "events"] == [
        ("create", "secrets", "okta-scim-token"),
        ("create", "secrets", SETTINGS.bundle_secret_name),
        ("status", "scimconnections", "okta"),
    ]
    (bundle,) = store.bundle_at_status
    assert bundle is not None and "okta" in bundle["scim"]
    # Nothing changed: a second pass writes nothing.
    store.log.clear()
    await flush_namespace(runtime, NS)
    assert store.log == []

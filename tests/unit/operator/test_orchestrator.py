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

    def writes(self) -> list[tuple[str, str, str]]:
        """What was written, Events left out."""
        return [e for e in self.log if e[1] != "events"]

    def bundle(self, namespace: str) -> dict[str, Any] | None:
        secret = self.objects.get(self.key("v1", "secrets", namespace, SETTINGS.bundle_secret_name))
        return json.loads(base64.b64decode(secret["data"]["identity.json"])) if secret else None


def scim_body(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "keyplane.dev/v1alpha1", "kind": "ScimConnection",
            "metadata": {"name": "okta", "namespace": NS, "uid": "uid-okta", "generation": 1,
                         "annotations": annotations or {}},
            "spec": {"token": {"overlap": "1h"}}}


def runtime_over(store: RecordingStore, clock: Any = lambda: NOW) -> Runtime:
    """A fresh operator process over `store` (a second one over the same store is a restart)."""
    return Runtime(settings=SETTINGS, kube=store, cache=None, resolver=None,  # type: ignore[arg-type]
                   clock=clock)


def runtime_with(store: RecordingStore, body: dict[str, Any], clock: list[Any]) -> tuple[Runtime, Snapshot]:
    store.objects[store.key("keyplane.dev/v1alpha1", "scimconnections", NS, "okta")] = body
    snap = Snapshot.from_body(body)
    runtime = runtime_over(store, lambda: clock[0])
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
    assert store.writes() == [
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


def scim_named(name: str, idp: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"token": {"overlap": "1h"}}
    if idp:
        spec["identityProviderRef"] = {"name": idp}
    return {"apiVersion": "keyplane.dev/v1alpha1", "kind": "ScimConnection",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1}, "spec": spec}


def idp_named(name: str) -> dict[str, Any]:
    return {"apiVersion": "keyplane.dev/v1alpha1", "kind": "IdentityProvider",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-idp-{name}", "generation": 1},
            "spec": {"protocol": "SAML", "saml": {"metadata": {"inline": "<not observed yet/>"}}}}


def index(runtime: Runtime, store: RecordingStore, *bodies: dict[str, Any]) -> list[Snapshot]:
    plurals = {"ScimConnection": "scimconnections", "IdentityProvider": "identityproviders"}
    snaps = []
    for body in bodies:
        store.objects[store.key("keyplane.dev/v1alpha1", plurals[body["kind"]], NS, body["metadata"]["name"])] = body
        snaps.append(Snapshot.from_body(body))
    runtime.indexes["scim_index"] = {NS: [s for s in snaps if s.kind == "ScimConnection"]}
    runtime.indexes["idp_index"] = {NS: [s for s in snaps if s.kind == "IdentityProvider"]}
    return snaps


def statuses(store: RecordingStore) -> list[str]:
    return [name for (what, _plural, name) in store.log if what == "status"]


async def test_a_new_object_not_yet_observed_does_not_hold_up_the_rest_of_its_namespace() -> None:
    """One new object Kopf is slow to hand over (a burst elsewhere) must not delay every other object's
    Ready; it and what depends on it wait for their own pass, and nothing is written about them."""
    store = RecordingStore()
    runtime = runtime_over(store)
    ready, _late_idp, _its_scim = index(runtime, store, scim_named("okta"), idp_named("corp"),
                                        scim_named("corp", idp="corp"))
    await observe(runtime, ready)  # the IdP "corp" is not observed yet, nor its ScimConnection
    await flush_namespace(runtime, NS)
    assert statuses(store) == ["okta"]
    bundle = store.bundle(NS)
    assert bundle is not None and set(bundle["scim"]) == {"okta"} and bundle["identityProviders"] == {}


async def test_a_dependant_of_a_new_idp_not_yet_observed_waits_with_it() -> None:
    """Its status would say its IdentityProvider is not Ready (and post an Event) for a moment."""
    store = RecordingStore()
    runtime = runtime_over(store)
    ready, _late_idp, its_scim = index(runtime, store, scim_named("okta"), idp_named("corp"),
                                       scim_named("corp", idp="corp"))
    await observe(runtime, ready)
    await observe(runtime, its_scim)  # observed, but its IdP is not
    await flush_namespace(runtime, NS)
    assert statuses(store) == ["okta"]
    assert "corp" not in (store.bundle(NS) or {}).get("scim", {})


async def test_after_a_restart_nothing_is_written_until_what_the_bundle_carries_is_observed() -> None:
    store = RecordingStore()
    first = runtime_over(store)
    (okta,) = index(first, store, scim_named("okta"))
    await observe(first, okta)
    await flush_namespace(first, NS)
    carried = store.bundle(NS)
    assert carried is not None and "okta" in carried["scim"]

    restarted = runtime_over(store)
    okta, entra = index(restarted, store, scim_named("okta"), scim_named("entra"))
    await observe(restarted, entra)  # the new one is observed first; okta, in the bundle, is not yet
    store.log.clear()
    await flush_namespace(restarted, NS)
    assert store.writes() == [], "a pass dropped or rewrote what the bundle carries"
    await observe(restarted, okta)
    await flush_namespace(restarted, NS)
    assert set((store.bundle(NS) or {})["scim"]) == {"okta", "entra"}


async def test_a_namespace_whose_objects_are_all_new_and_unobserved_gets_no_pass() -> None:
    """A pass with every object left out would see an empty namespace and delete its bundle Secret."""
    store = RecordingStore()
    runtime = runtime_over(store)
    (gone,) = index(runtime, store, scim_named("gone"))
    await observe(runtime, gone)
    await flush_namespace(runtime, NS)
    assert store.bundle(NS) is not None
    index(runtime, store, idp_named("corp"), scim_named("corp", idp="corp"))  # "gone" was replaced
    store.log.clear()
    await flush_namespace(runtime, NS)
    assert store.writes() == []
    assert store.bundle(NS) is not None

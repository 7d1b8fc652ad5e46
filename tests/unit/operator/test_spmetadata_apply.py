"""The SP metadata ConfigMap of an IdP created since the operator started is created without a read first
(a round trip less on its way to Ready); any other is read first, so a restart writes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from keyplane.contract import rfc3339
from keyplane.reconcile.model import Snapshot
from keyplane.render import MemoryStore
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from keyplane.writer.spmetadata import _apply, created_since_start, sp_metadata_configmap, write_sp_metadata

NS = "team-a"


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append("get")
        return await super().get(api_version, plural, namespace, name)

    async def create(self, api_version: str, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        return await super().create(api_version, plural, namespace, body)

    async def patch(self, api_version: str, plural: str, namespace: str, name: str,
                    patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("patch")
        return await super().patch(api_version, plural, namespace, name, patch)


def idp(runtime: Runtime, age: timedelta) -> Snapshot:
    return Snapshot(kind="IdentityProvider", namespace=NS, name="okta", uid="u1", generation=1,
                    creation_timestamp=rfc3339(runtime.started_at - age), spec={}, status={}, annotations={})


async def test_a_new_idps_configmap_is_created_without_a_read_and_an_old_ones_is_only_read() -> None:
    store = CountingStore()
    runtime = Runtime(settings=Settings(), kube=store, cache=None, resolver=None)  # type: ignore[arg-type]
    new = idp(runtime, -timedelta(seconds=5))
    assert created_since_start(runtime, new)
    manifest = sp_metadata_configmap(NS, "okta", "<md:EntityDescriptor/>", new)
    await _apply(runtime, NS, manifest, likely_new=True)
    assert store.calls == ["create"]

    restarted = Runtime(settings=Settings(), kube=store, cache=None, resolver=None)  # type: ignore[arg-type]
    old = idp(restarted, timedelta(hours=1))
    assert not created_since_start(restarted, old)
    store.calls.clear()
    await _apply(restarted, NS, manifest, likely_new=False)
    assert store.calls == ["get"]


async def test_a_configmap_left_by_an_earlier_object_of_that_name_is_adopted() -> None:
    """Deleted and re-created at once (GitOps replace): the old ConfigMap may still be there."""
    store = CountingStore()
    runtime = Runtime(settings=Settings(), kube=store, cache=None, resolver=None)  # type: ignore[arg-type]
    await store.create("v1", "configmaps", NS, sp_metadata_configmap(NS, "okta", "<old/>", None))
    store.calls.clear()
    manifest = sp_metadata_configmap(NS, "okta", "<new/>", idp(runtime, -timedelta(seconds=1)))
    await _apply(runtime, NS, manifest, likely_new=True)
    assert store.calls == ["create", "get", "patch"]
    current = await store.get("v1", "configmaps", NS, manifest["metadata"]["name"])
    assert current is not None and current["data"] == manifest["data"]


async def test_a_configmap_whose_deletion_the_watch_reports_first_does_not_fail_the_pass() -> None:
    # Deleting many IdPs at once (seen on a real API server): while the pass awaits one ConfigMap's DELETE,
    # the ConfigMap watch's DELETED event already dropped it from what the runtime remembers.
    class WatchFirstStore(MemoryStore):
        async def delete(self, api_version: str, plural: str, namespace: str, name: str) -> None:
            await super().delete(api_version, plural, namespace, name)
            runtime.sp_metadata.pop((namespace, name.removesuffix("-sp-metadata")), None)

    runtime = Runtime(settings=Settings(), kube=WatchFirstStore(), cache=None, resolver=None)  # type: ignore[arg-type]
    runtime.sp_metadata[(NS, "gone")] = "digest"
    await write_sp_metadata(runtime, NS, [], {"identityProviders": {}})
    assert runtime.sp_metadata == {}

"""Objects deleted while a metadata refresh is in flight; namespaces deleted with objects in them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faultkit import (
    MetadataServer,
    assert_no_crash,
    bundle,
    captured_logs,
    inline_idp,
    is_ready,
    namespace,
    saml_url_idp,
    scim,
)

GV = "keyplane.dev/v1alpha1"


@pytest.mark.slow
async def test_idp_deleted_while_its_refresh_is_in_flight(cluster: Any, keyplane_operator: Any) -> None:
    ns = "faults-delete-inflight"
    await cluster.create(namespace(ns))
    async with MetadataServer() as server, keyplane_operator() as runtime:
        with captured_logs() as logs:
            await cluster.create(inline_idp("keep", ns))
            await cluster.create(saml_url_idp("doomed", ns, server.url("/md.xml")))

            async def both_in_bundle() -> bool:
                b = await bundle(cluster, ns)
                return bool(b and {"keep", "doomed"} <= set(b["identityProviders"]))

            await cluster.wait_for(both_in_bundle, timeout=15)
            server.behaviour["/md.xml"] = "slow-ok"  # every refresh now hangs for 2 s
            hits = server.hits.get("/md.xml", 0)
            await cluster.wait_for(lambda: server.hits.get("/md.xml", 0) > hits, timeout=10)  # in flight now
            await cluster.delete(GV, "IdentityProvider", ns, "doomed")
            await cluster.wait_for(lambda: _gone(cluster, ns, "doomed"), timeout=10)

            async def only_keep() -> bool:
                b = await bundle(cluster, ns)
                return bool(b and set(b["identityProviders"]) == {"keep"})

            await cluster.wait_for(only_keep, timeout=10)
            await asyncio.sleep(2.5)  # the in-flight fetch completes after the delete
            assert await _gone(cluster, ns, "doomed"), "the late refresh resurrected the object"
            assert set((await bundle(cluster, ns))["identityProviders"]) == {"keep"}  # type: ignore[index]
            assert ("doomed" not in {name for (_ns, name) in runtime.idp_observations})
        assert_no_crash(logs.text())


async def _gone(cluster: Any, ns: str, name: str, kind: str = "IdentityProvider") -> bool:
    return await cluster.get(GV, kind, ns, name) is None


@pytest.mark.slow
async def test_namespace_deleted_with_objects_in_it(cluster: Any, keyplane_operator: Any) -> None:
    doomed, other = "faults-ns-doomed", "faults-ns-other"
    for ns in (doomed, other):
        await cluster.create(namespace(ns))
    async with keyplane_operator():
        with captured_logs() as logs:
            for ns in (doomed, other):
                await cluster.create(inline_idp("okta", ns, sign=True))
                await cluster.create(scim("okta", ns, idp="okta"))

            async def ready_everywhere() -> bool:
                for ns in (doomed, other):
                    if not is_ready(await cluster.get(GV, "ScimConnection", ns, "okta")):
                        return False
                    if not (await bundle(cluster, ns) or {}).get("scim"):
                        return False
                return True

            await cluster.wait_for(ready_everywhere, timeout=20)
            other_bundle = await bundle(cluster, other)
            # What the namespace controller does: the namespace goes, and every object in it is deleted.
            await cluster.delete("v1", "Namespace", None, doomed)
            for kind in ("ScimConnection", "IdentityProvider"):
                await cluster.delete(GV, kind, doomed, "okta")

            async def emptied() -> bool:
                return (await _gone(cluster, doomed, "okta", "ScimConnection")
                        and await _gone(cluster, doomed, "okta", "IdentityProvider"))

            await cluster.wait_for(emptied, timeout=15)  # finalizers removed: deletion never hangs
            for secret in await cluster.list("v1", "Secret", doomed):
                await cluster.delete("v1", "Secret", doomed, secret["metadata"]["name"])
            await asyncio.sleep(2.0)
            assert await cluster.list("v1", "Secret", doomed) == [], "something was written into the deleted namespace"
            assert await bundle(cluster, other) == other_bundle  # the neighbour is untouched
            assert is_ready(await cluster.get(GV, "ScimConnection", other, "okta"))
        assert_no_crash(logs.text())

"""The API server misbehaves: conflicts, 500s, dropped and expired watches, slowness. The operator retries
with backoff and converges, with exactly one of each owned Secret, and then goes quiet."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from faultkit import (
    ApiFaults,
    assert_no_crash,
    bundle,
    captured_logs,
    inline_idp,
    is_ready,
    is_watch,
    is_write,
    namespace,
    scim,
    secret_value,
    sha256,
)

GV = "keyplane.dev/v1alpha1"


def _objects(ns: str) -> list[dict[str, Any]]:
    domain = {"apiVersion": GV, "kind": "SSODomain", "metadata": {"name": "acme", "namespace": ns},
              "spec": {"domains": [f"{ns}.example.com"], "identityProviderRef": {"name": "okta"},
                       "enforcement": "Required"}}
    return [inline_idp("okta", ns, sign=True), scim("okta", ns, idp="okta"), domain]


async def _converged(cluster: Any, ns: str) -> bool:
    for kind, name in (("IdentityProvider", "okta"), ("ScimConnection", "okta"), ("SSODomain", "acme")):
        if not is_ready(await cluster.get(GV, kind, ns, name)):
            return False
    b = await bundle(cluster, ns)
    token = secret_value(await cluster.get("v1", "Secret", ns, "okta-scim-token"))
    return bool(b and token and "okta" in b["identityProviders"] and f"{ns}.example.com" in b["domains"]
                and b["scim"]["okta"]["tokenHashes"][0]["sha256"] == sha256(token))


async def _assert_single_secrets(cluster: Any, ns: str) -> None:
    names = sorted(s["metadata"]["name"] for s in await cluster.list("v1", "Secret", ns))
    assert names == ["keyplane-identity", "okta-scim-token", "okta-sp-signing"], names
    signing = await cluster.get("v1", "Secret", ns, "okta-sp-signing")
    cert = base64.b64decode(signing["data"]["tls.crt"]).decode()
    body = "".join(line for line in cert.splitlines() if "-----" not in line)
    entry = (await bundle(cluster, ns))["identityProviders"]["okta"]  # type: ignore[index]
    assert body[:64] in json.dumps(entry), "the bundle uses another SP certificate than the Secret holds"


async def _run(cluster: Any, keyplane_operator: Any, ns: str, faults: ApiFaults, timeout: float = 45) -> None:
    await cluster.create(namespace(ns))
    with captured_logs() as logs, faults.installed():
        async with keyplane_operator():
            for obj in _objects(ns):
                await cluster.create(obj)
            await cluster.wait_for(lambda: _converged(cluster, ns), timeout=timeout)
            for name, hits in faults.hits.items():
                assert hits > 0, f"fault {name} was never triggered"
            # Then it goes quiet (pending Kopf retries may finish first): no retry loop left spinning.
            for _ in range(5):
                cluster.mark()
                await asyncio.sleep(2.5)
                if not (writes := cluster.writes_since_mark(ignore_events=True)):
                    break
            assert writes == [], "still writing 12 s after converging"
        await _assert_single_secrets(cluster, ns)
    # Kopf logs its own refused bookkeeping patches with a traceback ("Throttling for ..."): expected here.
    assert_no_crash(logs, allow=("Throttling for",))


@pytest.mark.slow
async def test_conflicts_on_status_and_secret_writes(cluster: Any, keyplane_operator: Any) -> None:
    faults = ApiFaults()
    faults.add("status-409", lambda r: is_write(r, status=True), status=409, times=2)
    faults.add("secret-create-409", lambda r: is_write(r, plural="secrets", methods=("POST",)), status=409, times=2)
    faults.add("secret-patch-409", lambda r: is_write(r, plural="secrets", methods=("PATCH",)), status=409, times=1)
    faults.add("object-patch-409", lambda r: is_write(r, plural="scimconnections", status=False), status=409,
               times=1)
    await _run(cluster, keyplane_operator, "faults-api-409", faults)


@pytest.mark.slow
async def test_server_errors_on_every_kind_of_write(cluster: Any, keyplane_operator: Any) -> None:
    faults = ApiFaults()
    faults.add("secret-500", lambda r: is_write(r, plural="secrets"), status=500, times=2)
    faults.add("status-500", lambda r: is_write(r, status=True), status=500, times=1)
    faults.add("read-500", lambda r: r.method.value == "GET" and r.resource is not None
               and str(r.resource.plural) == "secrets" and r.name is not None, status=500, times=1)
    await _run(cluster, keyplane_operator, "faults-api-500", faults)


@pytest.mark.slow
async def test_dropped_and_expired_watches_and_a_slow_api(cluster: Any, keyplane_operator: Any) -> None:
    faults = ApiFaults()
    # Every keyplane watch stream ends at once for a while: Kopf re-lists and re-watches.
    faults.add("watch-drop", lambda r: is_watch(r) and r.resource is not None
               and r.resource.group == "keyplane.dev", watch_drop=True, times=6)
    # A resumed watch is told its resourceVersion is too old (410 Gone): Kopf must re-list.
    faults.add("watch-gone", lambda r: is_watch(r, resumed=True), watch_gone=True, times=3)
    # The API is slow for the first 60 requests of the operator.
    faults.add("slow", lambda r: not is_watch(r), delay=0.15, times=60)
    await _run(cluster, keyplane_operator, "faults-api-watch", faults, timeout=40)

"""The floor: a bare Kopf operator that makes exactly as many writes per object as Keyplane did, and nothing else.

Run as `python -m bench.floor` with KUBECONFIG set and:
  FLOOR_WRITES         {"IdentityProvider": w, ...}: modifying requests per object of each kind (the last
                       one sets Ready=True in status);
  FLOOR_BUNDLE_WRITES  writes per namespace "bundle" Secret (created, then patched; the last patch marks it complete);
  FLOOR_EXPECTED       {"namespace": objects in it}: when all of a namespace's objects are handled, its
                       bundle is written;
  FLOOR_NAMESPACES     (optional) comma-separated namespaces to watch instead of the whole cluster.
It uses `@kopf.on.event` (no finalizers, no progress or diff-base annotations: Kopf's cheapest handler) and
the same HTTP client as Keyplane (keyplane.sources.kube.KubeAPI). It parses nothing, renders nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import kopf

from keyplane.sources.kube import KubeAPI

GROUP, VERSION = "keyplane.dev", "v1alpha1"
PLURALS = {"IdentityProvider": "identityproviders", "ScimConnection": "scimconnections", "SSODomain": "ssodomains"}
WRITES: dict[str, int] = json.loads(os.environ.get("FLOOR_WRITES", "{}"))
BUNDLE_WRITES = int(os.environ.get("FLOOR_BUNDLE_WRITES", "1"))
EXPECTED: dict[str, int] = json.loads(os.environ.get("FLOOR_EXPECTED", "{}"))
# Only these namespaces when set (a real cluster keeps earlier runs' objects; see bench/external.py).
NAMESPACES = [ns for ns in os.environ.get("FLOOR_NAMESPACES", "").split(",") if ns]

_seen: set[tuple[str, str, str]] = set()
_done: Counter[str] = Counter()
_kube: list[KubeAPI] = []
# At most this many API calls in flight, like a well-behaved operator (Keyplane's KubeAPI admits as many).
_inflight = asyncio.Semaphore(int(os.environ.get("FLOOR_CONCURRENCY", "20")))


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    _kube.append(KubeAPI.from_environment())


async def _bundle(namespace: str) -> None:
    kube = _kube[0]
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keyplane-identity", "namespace": namespace},
            "data": {"identity.json": "e30="}}
    if BUNDLE_WRITES <= 1:
        body["metadata"]["annotations"] = {"bench.keyplane.dev/complete": "true"}
    async with _inflight:
        await kube.create("v1", "secrets", namespace, body)
    for i in range(1, BUNDLE_WRITES):
        annotations = {"bench.keyplane.dev/write": str(i)}
        if i == BUNDLE_WRITES - 1:
            annotations["bench.keyplane.dev/complete"] = "true"
        async with _inflight:
            patch = {"metadata": {"annotations": annotations}}
            await kube.patch("v1", "secrets", namespace, "keyplane-identity", patch)


async def _handle(kind: str, body: kopf.Body, event_type: str | None) -> None:
    if event_type == "DELETED":
        return
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    key = (kind, ns, name)
    if key in _seen:
        return
    _seen.add(key)
    kube, plural = _kube[0], PLURALS[kind]
    for i in range(max(WRITES.get(kind, 1), 1) - 1):
        async with _inflight:
            await kube.patch_status(f"{GROUP}/{VERSION}", plural, ns, name, {"floorWrite": i})
    # A whole condition, as the CRD's schema requires (a real API server refuses one without
    # lastTransitionTime with 422; the emulator does not validate). The time is formatted here, not with
    # keyplane.contract.rfc3339: importing that module loads python3-saml and xmlsec into the floor.
    ready = {"type": "Ready", "status": "True", "reason": "Floor", "message": "",
             "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "observedGeneration": body["metadata"].get("generation", 1)}
    async with _inflight:
        await kube.patch_status(f"{GROUP}/{VERSION}", plural, ns, name, {"conditions": [ready]})
    _done[ns] += 1
    if _done[ns] == EXPECTED.get(ns, -1):
        await _bundle(ns)


@kopf.on.event(GROUP, VERSION, "identityproviders")
async def idp_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    await _handle("IdentityProvider", body, type)


@kopf.on.event(GROUP, VERSION, "scimconnections")
async def scim_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    await _handle("ScimConnection", body, type)


@kopf.on.event(GROUP, VERSION, "ssodomains")
async def ssod_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    await _handle("SSODomain", body, type)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "kopf.objects"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(kopf.operator(clusterwide=not NAMESPACES, namespaces=NAMESPACES, standalone=True,
                              liveness_endpoint=None))


if __name__ == "__main__":
    main()

"""`keyplane demo`: the real operator, over real HTTP, against an emulated API server on 127.0.0.1.

It applies the CRDs and a folder of manifests as kubectl would, runs the operator until every object
is Ready and every namespace's bundle is written, prints what converged, and stops everything.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .api.crds import all_crds
from .api.kinds import API_GROUP_VERSION, KINDS
from .reconcile.bundle import BUNDLE_KEY
from .reconcile.conditions import READY, condition
from .render import read_documents
from .settings import Settings

_ORDER = {"Namespace": 0, "ConfigMap": 1, "Secret": 1, "IdentityProvider": 2, "SSODomain": 3, "ScimConnection": 4}


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")


async def run_demo(
    examples: Path, *, timeout: float = 60.0, out: TextIO = sys.stdout, settings: Settings | None = None
) -> int:
    import kopf

    from . import handlers  # noqa: F401  (registers the handlers)
    from .testing import ChartUnavailableError, emulated_cluster, render_chart_rbac, running_operator, use_kubeconfig

    documents = sorted(read_documents([str(examples)]), key=lambda d: _ORDER.get(str(d.get("kind")), 5))
    settings = settings or Settings(liveness_endpoint=None, bundle_debounce=0.2, bundle_max_delay=1.0)
    started = time.monotonic()
    try:  # the operator runs as deployed: the chart's ServiceAccount, authorized by the chart's RBAC
        rbac = render_chart_rbac()
        identity = f"as {rbac.user.name} under the chart's RBAC"
    except ChartUnavailableError as e:  # e.g. an installed package, without the chart or helm
        rbac, identity = None, f"as admin ({e})"
    async with emulated_cluster(all_crds(), rbac=rbac) as cluster:
        restore = use_kubeconfig(cluster.kubeconfig_path)
        try:
            out.write(f"Emulated API server at {cluster.url}; CRDs registered: "
                      f"{', '.join(k.crd_name for k in KINDS)}\n")
            out.write(f"The operator authenticates {identity}\n")
            for doc in documents:
                await cluster.apply(doc)
            out.write(f"Applied {len(documents)} objects from {examples}\n\n")
            keyplane_objects = [d for d in documents if d.get("apiVersion") == API_GROUP_VERSION]
            namespaces = sorted({d["metadata"].get("namespace", "default") for d in keyplane_objects})
            async with running_operator(memo=kopf.Memo(settings=settings), clusterwide=True):
                converged = await _wait_converged(cluster, keyplane_objects, namespaces, settings, timeout)
                await _report(cluster, keyplane_objects, namespaces, settings, out)
        finally:
            restore()
    elapsed = time.monotonic() - started
    out.write(f"\n{'Converged' if converged else 'NOT converged'} in {elapsed:.1f}s.\n")
    return 0 if converged else 1


async def _objects(cluster: Any, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for doc in docs:
        meta = doc["metadata"]
        obj = await cluster.get(API_GROUP_VERSION, doc["kind"], meta.get("namespace", "default"), meta["name"])
        if obj is not None:
            found.append(obj)
    return found


async def _wait_converged(
    cluster: Any, docs: list[dict[str, Any]], namespaces: list[str], settings: Settings, timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        objects = await _objects(cluster, docs)
        ready = all((condition(o.get("status"), READY) or {}).get("status") == "True" for o in objects)
        bundles = [await cluster.get("v1", "Secret", ns, settings.bundle_secret_name) for ns in namespaces]
        if ready and len(objects) == len(docs) and all(bundles):
            return True
        await asyncio.sleep(0.1)
    return False


async def _report(
    cluster: Any, docs: list[dict[str, Any]], namespaces: list[str], settings: Settings, out: TextIO
) -> None:
    objects = await _objects(cluster, docs)
    rows = [["KIND", "NAMESPACE", "NAME", "READY", "REASON", "CONDITIONS"]]
    for obj in objects:
        status = obj.get("status") or {}
        ready = condition(status, READY) or {}
        others = ",".join(
            f"{c['type']}={c['status']}" for c in status.get("conditions") or [] if c["type"] != READY
        )
        rows.append([obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"],
                     str(ready.get("status", "-")), str(ready.get("reason", "-")), others])
    out.write("Objects:\n")
    _table(rows, out)

    out.write("\nWhat to paste into the IdPs:\n")
    for obj in objects:
        status = obj.get("status") or {}
        if obj["kind"] == "IdentityProvider":
            sp = status.get("serviceProvider") or {}
            out.write(f"  idp/{obj['metadata']['name']}: ACS URL {sp.get('acsURL')}  entity ID {sp.get('entityID')}\n")
        elif obj["kind"] == "ScimConnection":
            ref = status.get("tokenSecretRef") or {}
            out.write(f"  scim/{obj['metadata']['name']}: endpoint {status.get('endpointURL')}  "
                      f"token in Secret {ref.get('name')} (key {ref.get('key')})\n")

    out.write("\nOutputs written by the operator:\n")
    rows = [["KIND", "NAMESPACE", "NAME", "KEYS", "NOTE"]]
    for ns in namespaces:
        for secret in await cluster.list("v1", "Secret", ns):
            labels = (secret.get("metadata") or {}).get("labels") or {}
            if labels.get("app.kubernetes.io/managed-by") != "keyplane":
                continue
            name = secret["metadata"]["name"]
            note = ""
            if name == settings.bundle_secret_name:
                bundle = json.loads(base64.b64decode(secret["data"][BUNDLE_KEY]))
                note = (f"bundle: {len(bundle['identityProviders'])} IdPs, "
                        f"domains {','.join(sorted(bundle['domains']))}, "
                        f"SCIM {','.join(e['endpointPath'] for e in bundle['scim'].values())}")
            rows.append(["Secret", ns, name, ",".join(sorted(secret.get("data") or {})), note])
        events = await cluster.list("v1", "Event", ns)
        rows.append(["Event", ns, f"({len(events)})", "", "posted on condition transitions"])
    _table(rows, out)

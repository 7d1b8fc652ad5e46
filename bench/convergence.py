"""Convergence: N of each kind over 10 namespaces until all Ready and every bundle is complete; the floor beside it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import Counter
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from . import latency, workload
from . import restart as restart_section
from .harness import (
    OperatorProcess,
    Progress,
    classify_writes,
    cluster_with_namespaces,
    create_all,
    new_section,
    place,
    request_count,
    requests_since,
    scope,
)
from .shared_url import MetadataServer

NAMESPACES = 10
OBJECT_KINDS = ("IdentityProvider", "ScimConnection", "SSODomain")


async def run_keyplane(n: int, *, env: dict[str, str] | None = None, idle_window: float = 0.0,
                       settle: float = 0.0, timeout: float = 300.0, probes: bool = False,
                       restart: bool = False, url_idps: int = 0, url_refresh: str = "1s") -> dict[str, Any]:
    """Keyplane on N of each kind; optionally an idle window after convergence (modifying requests counted),
    with `url_idps` more IdentityProviders refreshing their own metadata URL every `url_refresh`, probes of
    one object's latency during the burst (bench/latency.py) and a restart (bench/restart.py)."""
    new_section()
    async with contextlib.AsyncExitStack() as stack:
        metadata_server = None
        docs = workload.objects(n, NAMESPACES)
        env = dict(env or {})
        if url_idps:
            metadata_server = MetadataServer(workload.inline_metadata())
            await metadata_server.start()
            stack.push_async_callback(metadata_server.stop)
            docs += workload.url_idps(url_idps, metadata_server.url, url_refresh, NAMESPACES)
            env.update({"KEYPLANE_ALLOW_PRIVATE_NETWORKS": "true", "KEYPLANE_ALLOW_INSECURE_HTTP": "true",
                        "KEYPLANE_METRICS_ENDPOINT": f"http://127.0.0.1:{free_port()}/metrics"})
        return await _run_keyplane(n, place(docs), env, idle_window, settle, timeout, metadata_server,
                                   probes=probes, restart=restart)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _run_keyplane(n: int, docs: list[dict[str, Any]], env: dict[str, str], idle_window: float, settle: float,
                        timeout: float, metadata_server: MetadataServer | None, *, probes: bool,
                        restart: bool) -> dict[str, Any]:
    namespaces = sorted({d["metadata"]["namespace"] for d in docs})
    namespaces += [latency.namespace()] if probes else []
    namespaces += [restart_section.namespace()] if restart else []
    env = {**env, **(restart_section.URL_ENV if restart else {}), **scope("KEYPLANE_NAMESPACES", namespaces)}
    async with cluster_with_namespaces(namespaces) as cluster:
        op = OperatorProcess(cluster, "keyplane", env, name=f"keyplane-{n}")
        try:
            startup_s = await op.wait_watching(workload.KINDS.values())
            ready_rss_mb = op.read_rss_mb()
            start_index = request_count(cluster)
            cpu0 = op.cpu_seconds() or 0.0
            progress = Progress(cluster, docs)
            t0 = time.monotonic()
            burst: list[bool] = []  # non-empty once converged
            probing = asyncio.create_task(latency.probe_during(cluster, lambda: not burst)) if probes else None
            create_s = await create_all(cluster, docs)
            await progress.wait(timeout=timeout)
            elapsed = time.monotonic() - t0
            op.converged()
            burst.append(True)
            cpu = (op.cpu_seconds() or 0.0) - cpu0
            requests = requests_since(cluster, start_index)
            writes = classify_writes(requests)
            result: dict[str, Any] = {
                "n": n, "objects": len(docs), "seconds": elapsed, "create_s": create_s, "startup_s": startup_s,
                "operator_cpu_s": cpu, "requests": len(requests), "writes": dict(writes),
                "peak_rss_mb": op.read_peak_rss_mb(), "ready_rss_mb": ready_rss_mb,
                "api_latency": latency.api_latency(requests),
            }
            if probing is not None:  # before the idle window: the probes' creates are the bench's own writes
                result["latency"] = await probing
            if idle_window:
                await asyncio.sleep(settle)
                if metadata_server is not None:
                    metadata_server.reset()
                cluster.mark()
                await asyncio.sleep(idle_window)
                idle = cluster.writes_since_mark()
                seen = cluster.requests_since_mark()
                token_reads = sum(1 for r in seen if r.method.value == "GET" and r.url.path.endswith("-scim-token"))
                result["idle"] = {"window_s": idle_window, "modifying_requests": len(idle), "sample": idle[:10],
                                  "requests": len(seen), "timer_ticks_per_object": round(token_reads / n, 1)}
                if metadata_server is not None:
                    result["idle"]["url_idps"] = await _url_refreshes(metadata_server, env, docs)
                result["peak_rss_mb"] = op.read_peak_rss_mb()
            log = op.log_text()
            result["tracebacks"] = log.count("Traceback")
            if restart:
                try:
                    result["restart"] = await restart_section.restart(cluster, op, env, len(docs))
                except (TimeoutError, RuntimeError) as exc:  # report it, keep the other figures
                    result["restart"] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            await op.stop()
        return result


def floor_writes(n: int, writes: dict[str, int]) -> tuple[dict[str, int], int]:
    """Keyplane's writes per object of each kind (rounded) and per namespace bundle."""
    per_kind = {kind: max(1, round(writes.get(kind, 0) / n)) for kind in OBJECT_KINDS}
    per_bundle = max(1, round(writes.get("bundle", 0) / NAMESPACES))
    return per_kind, per_bundle


async def run_floor(n: int, per_kind: dict[str, int], per_bundle: int, timeout: float = 300.0) -> dict[str, Any]:
    new_section()
    docs = place(workload.objects(n, NAMESPACES))
    namespaces = sorted({d["metadata"]["namespace"] for d in docs})
    expected: dict[str, int] = {}
    for doc in docs:
        expected[doc["metadata"]["namespace"]] = expected.get(doc["metadata"]["namespace"], 0) + 1
    env = {"FLOOR_WRITES": json.dumps(per_kind), "FLOOR_BUNDLE_WRITES": str(per_bundle),
           "FLOOR_EXPECTED": json.dumps(expected), **scope("FLOOR_NAMESPACES", namespaces)}
    async with cluster_with_namespaces(namespaces) as cluster:
        op = OperatorProcess(cluster, "bench.floor", env, name=f"floor-{n}")
        try:
            await op.wait_watching(workload.KINDS.values())
            ready_rss_mb = op.read_rss_mb()
            start_index = request_count(cluster)
            cpu0 = op.cpu_seconds() or 0.0
            progress = Progress(cluster, docs, floor=True)
            t0 = time.monotonic()
            create_s = await create_all(cluster, docs)
            await progress.wait(timeout=timeout)
            elapsed = time.monotonic() - t0
            op.converged()
            requests = requests_since(cluster, start_index)
            return {"n": n, "seconds": elapsed, "create_s": create_s, "requests": len(requests),
                    "operator_cpu_s": (op.cpu_seconds() or 0.0) - cpu0,
                    "writes": dict(classify_writes(requests)), "peak_rss_mb": op.read_peak_rss_mb(),
                    "ready_rss_mb": ready_rss_mb, "api_latency": latency.api_latency(requests)}
        finally:
            await op.stop()


async def convergence(n: int, **keyplane_kwargs: Any) -> dict[str, Any]:
    keyplane = await run_keyplane(n, **keyplane_kwargs)
    per_kind, per_bundle = floor_writes(n, keyplane["writes"])
    floor = await run_floor(n, per_kind, per_bundle)
    objects = keyplane["objects"]
    return {
        "n": n,
        "objects": objects,
        "keyplane_s": round(keyplane["seconds"], 3),
        "floor_s": round(floor["seconds"], 3),
        "ratio": round(keyplane["seconds"] / floor["seconds"], 2),
        "keyplane_objects_per_s": round(objects / keyplane["seconds"], 1),
        "floor_objects_per_s": round(objects / floor["seconds"], 1),
        "floor_writes_per_object": per_kind,
        "floor_writes_per_bundle": per_bundle,
        "keyplane": keyplane,
        "floor": floor,
    }


async def _url_refreshes(server: MetadataServer, env: dict[str, str], docs: list[dict[str, Any]]) -> dict[str, Any]:
    """How often the URL IdentityProviders refreshed in the window (server side), and what the operator's
    metrics say about it (its fetch counters by result)."""
    k = sum(1 for d in docs if d["metadata"]["name"].startswith("url-idp-"))
    async with httpx.AsyncClient() as client:
        text = (await client.get(env["KEYPLANE_METRICS_ENDPOINT"])).text
    by_result: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "keyplane_identityprovider_metadata_fetches":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels["name"].startswith("url-idp-"):
                    by_result[sample.labels["result"]] += int(sample.value)
    requests = sum(server.statuses.values())
    return {"count": k, "window_requests": requests, "statuses": {str(c): v for c, v in server.statuses.items()},
            "refreshes_per_idp": round(requests / k, 1), "operator_fetches_by_result": dict(by_result)}

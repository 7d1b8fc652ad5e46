"""Restart at scale: the operator stopped and started again with every object Ready.

Before the restart, URL_IDPS IdentityProviders with `saml.metadata.url` (refreshInterval 1h) on a
local metadata server join the N objects in namespace `bench-url`, so metadata fetches can be
counted. Then the operator is stopped (SIGINT, as Kubernetes does) and a new process started; measured:
the seconds until it watches every kind again, and over WINDOW seconds after that the modifying API
requests it makes (target 0: nothing changed) and the requests reaching the metadata server (target 0:
the restart is within the refresh interval; the bundle carries the last document).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from keyplane.testing import EmulatedCluster

from . import workload
from .harness import OperatorProcess, Progress, create_all, place, placed_namespace
from .shared_url import MetadataServer

NAMESPACE = "bench-url"
URL_IDPS = 50
WINDOW = 30.0
# What the URL-sourced IdPs need from a metadata server on 127.0.0.1 over http.
URL_ENV = {"KEYPLANE_ALLOW_PRIVATE_NETWORKS": "true", "KEYPLANE_ALLOW_INSECURE_HTTP": "true"}


def url_idps(url: str, count: int = URL_IDPS) -> list[dict[str, Any]]:
    docs = []
    for i in range(count):
        doc = workload.idp_manifest(i, 1, metadata={"url": url, "refreshInterval": "1h"})
        doc["metadata"] = {"name": f"url-idp-{i:03d}", "namespace": NAMESPACE}
        docs.append(doc)
    return place(docs)


def namespace() -> str:
    """This section's namespace in this run (renamed per run on a real cluster)."""
    return placed_namespace(NAMESPACE)


async def restart(cluster: EmulatedCluster, op: OperatorProcess, env: Mapping[str, str], objects: int, *,
                  window: float = WINDOW, url_idps_count: int = URL_IDPS) -> dict[str, Any]:
    """Add the URL-sourced IdPs, restart the operator, count what the new process does."""
    server = MetadataServer(workload.inline_metadata())
    await server.start()
    try:
        docs = url_idps(server.url, url_idps_count)
        progress = Progress(cluster, docs)
        await create_all(cluster, docs)
        await progress.wait(timeout=120)
        fetched_before = sum(server.statuses.values())
        await asyncio.sleep(2.0)  # let the first process's last writes land
        await op.stop()
        server.reset()
        cluster.mark()
        since = len(list(cluster.emulator))
        again = OperatorProcess(cluster, "keyplane", env, name=f"{op.log_path.stem}-restarted")
        try:
            # Kopf opens a kind's watch only after handing every listed object to its workers.
            watching_s = await again.wait_watching(workload.KINDS.values(), since=since, timeout=600)
            await asyncio.sleep(window)
            writes = cluster.writes_since_mark()
            requests = cluster.requests_since_mark()
            result = {
                "objects": objects + len(docs), "url_idps": len(docs), "watching_s": round(watching_s, 2),
                "window_s": window, "modifying_requests": len(writes), "sample": writes[:10],
                "requests": len(requests), "metadata_fetches": sum(server.statuses.values()),
                "metadata_fetches_before_restart": fetched_before,
                "peak_rss_mb": again.read_peak_rss_mb(), "tracebacks": again.log_text().count("Traceback"),
            }
        finally:
            await again.stop()
        return result
    finally:
        await server.stop()

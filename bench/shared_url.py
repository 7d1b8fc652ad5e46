"""N IdentityProviders sharing one metadata URL: HTTP requests per refresh interval, with and without ETags."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from typing import Any

import aiohttp.web

from . import workload
from .harness import OperatorProcess, Progress, cluster_with_namespaces, create_all

NAMESPACES = 10


class MetadataServer:
    """Serves one metadata document on 127.0.0.1; counts requests and answers 304 to a matching ETag."""

    def __init__(self, document: str) -> None:
        self.body = document.encode()
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'
        self.use_etag = True
        self.statuses: Counter[int] = Counter()
        self.times: list[float] = []
        self._runner: aiohttp.web.AppRunner | None = None
        self.url = ""

    async def _serve(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        self.times.append(time.monotonic())
        if self.use_etag and request.headers.get("If-None-Match") == self.etag:
            self.statuses[304] += 1
            return aiohttp.web.Response(status=304, headers={"ETag": self.etag})
        self.statuses[200] += 1
        headers = {"ETag": self.etag} if self.use_etag else {}
        return aiohttp.web.Response(body=self.body, content_type="application/samlmetadata+xml", headers=headers)

    async def start(self) -> None:
        app = aiohttp.web.Application()
        app.router.add_get("/metadata.xml", self._serve)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/metadata.xml"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def reset(self) -> None:
        self.statuses.clear()
        self.times.clear()


async def shared_url(n: int, *, interval: float = 3.0, intervals: int = 4) -> dict[str, Any]:
    server = MetadataServer(workload.inline_metadata())
    await server.start()
    try:
        metadata = {"url": server.url, "refreshInterval": f"{interval:g}s"}
        docs = workload.objects(n, NAMESPACES, metadata=metadata, kinds=("IdentityProvider",))
        namespaces = sorted({d["metadata"]["namespace"] for d in docs})
        env = {"KEYPLANE_TIMER_INTERVAL": "1", "KEYPLANE_ALLOW_PRIVATE_NETWORKS": "true",
               "KEYPLANE_ALLOW_INSECURE_HTTP": "true"}
        async with cluster_with_namespaces(namespaces) as cluster:
            op = OperatorProcess(cluster, "keyplane", env, name=f"shared-{n}")
            try:
                await op.wait_watching(workload.KINDS.values())
                progress = Progress(cluster, docs)
                await create_all(cluster, docs)
                converge_s = await progress.wait(timeout=120)
                initial = dict(server.statuses)
                window = interval * intervals
                phases: dict[str, Any] = {}
                for phase, use_etag in (("etag_304", True), ("no_etag_200", False)):
                    server.use_etag = use_etag
                    await asyncio.sleep(interval * 1.5)  # let the previous phase's refreshes pass
                    server.reset()
                    cluster.mark()
                    await asyncio.sleep(window)
                    phases[phase] = {
                        "window_s": window, "refresh_intervals": intervals, "requests": sum(server.statuses.values()),
                        "statuses": {str(k): v for k, v in server.statuses.items()},
                        "fetches_per_interval": round(sum(server.statuses.values()) / intervals, 2),
                        "modifying_api_requests": cluster.modifying_requests(),
                    }
            finally:
                await op.stop()
        return {"n": n, "refresh_interval_s": interval, "converge_s": round(converge_s, 2),
                "initial_statuses": {str(k): v for k, v in initial.items()}, **phases}
    finally:
        await server.stop()

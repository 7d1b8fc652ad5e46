"""Serving a registry over HTTP on the operator's event loop (aiohttp, which Kopf already uses).

On the loop rather than in prometheus-client's thread: the collector then reads the operator's state
between two handler steps, never while a handler is changing it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.registry import Collector


class MetricsServer:
    """`await MetricsServer(registry, "http://0.0.0.0:8081/metrics").start()`; port 0 picks a free port."""

    def __init__(self, registry: Collector, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"metricsEndpoint must look like http://0.0.0.0:8081/metrics, not {endpoint!r}")
        self.host = parts.hostname
        self.port = parts.port if parts.port is not None else 80
        self.path = parts.path or "/metrics"
        app = web.Application()
        app.router.add_get(self.path, make_aiohttp_handler(registry))
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server  # the one way aiohttp tells which port it bound
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    async def stop(self) -> None:
        await self._runner.cleanup()

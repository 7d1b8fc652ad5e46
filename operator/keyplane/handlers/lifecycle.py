"""Operator start and stop: build the runtime (API client, fetcher, resolver) and tear it down."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import kopf

from ..metrics.server import MetricsServer
from ..orchestrator import flush_namespace
from ..runtime import Runtime
from ..settings import Settings, fetch_policy
from ..sources.dns import DnsPythonTxtResolver
from ..sources.fetcher import MetadataFetcher
from ..sources.kube import KubeAPI
from ..sources.metadata_cache import SharedMetadataCache
from ..writer.debounce import NamespaceWriter
from .kopf_handlers import configure_kopf
from .login import cluster_credentials

log = logging.getLogger("keyplane.operator")


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    keyplane: Settings = memo.settings
    configure_kopf(settings, keyplane)
    memo.fetcher = MetadataFetcher(fetch_policy(keyplane))
    memo.kube = KubeAPI(cluster_credentials(memo))
    runtime = Runtime(
        settings=keyplane,
        kube=memo.kube,
        cache=SharedMetadataCache(memo.fetcher),
        resolver=DnsPythonTxtResolver(list(keyplane.dns_nameservers) or None),
    )
    flush = runtime.metrics.timed_flush(functools.partial(flush_namespace, runtime))
    runtime.writer = NamespaceWriter(keyplane, flush)
    memo.runtime = runtime
    memo.metrics_server = await start_metrics(runtime, memo.kube)
    memo.resync = asyncio.create_task(_resync(runtime), name="keyplane-resync")
    log.info("Keyplane operator started (roles %s, base URL %s)", ",".join(keyplane.roles),
             keyplane.default_base_url)


async def _resync(runtime: Runtime) -> None:
    """Re-evaluate time-based state (certificate expiry, rotation overlap) without any object change."""
    while True:
        await asyncio.sleep(runtime.settings.resync_interval)
        if runtime.writer is not None:
            runtime.writer.schedule_all()


async def start_metrics(runtime: Runtime, kube: KubeAPI) -> MetricsServer | None:
    """Export the operator's state and counters; served only when the metricsEndpoint setting is set."""
    runtime.metrics.observe_state(runtime.metrics_state)
    kube.on_response = runtime.metrics.api_request
    endpoint = runtime.settings.metrics_endpoint
    server = None
    if endpoint:
        server = MetricsServer(runtime.metrics.registry, endpoint)
        try:
            await server.start()
        except OSError as exc:  # the port is taken, or the address is not this host's
            raise kopf.PermanentError(f"cannot serve metrics at {endpoint} (setting metricsEndpoint, "
                                      f"KEYPLANE_METRICS_ENDPOINT; Helm value metrics.port): {exc}") from exc
        runtime.metrics.url = server.url
        log.info("Metrics served at %s", server.url)
    runtime.metrics.count_watch_restarts()  # last: a start that failed above leaves no log tap behind
    return server


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    metrics_server: MetricsServer | None = getattr(memo, "metrics_server", None)
    if metrics_server is not None:
        await metrics_server.stop()
    resync = getattr(memo, "resync", None)
    if resync is not None:
        resync.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await resync
    if runtime is None:
        return
    runtime.closing = True  # timers Kopf left orphaned must not use the clients closed below
    if runtime.writer is not None:
        await runtime.writer.stop()
    await memo.fetcher.aclose()
    await memo.kube.aclose()
    runtime.metrics.close()

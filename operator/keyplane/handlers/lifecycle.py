"""Operator start and stop: build the runtime (API client, fetcher, resolver) and tear it down."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

import kopf

from ..metrics.server import MetricsServer
from ..orchestrator import flush_namespace
from ..runtime import Runtime
from ..settings import Settings, fetch_policy
from ..sources.dns import DnsPythonTxtResolver
from ..sources.kube import KubeAPI
from ..sources.metadata_cache import FetcherOnFirstUse, SharedMetadataCache
from ..sweep import Sweeper
from ..ticks import TICKS
from ..writer.debounce import NamespaceWriter
from .kopf_handlers import configure_kopf
from .login import cluster_credentials
from .pause import PauseStateNotFound, operator_paused

log = logging.getLogger("keyplane.operator")


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    keyplane: Settings = memo.settings
    configure_kopf(settings, keyplane)
    paused = _pause_state(settings, keyplane)  # first: in HA mode, not knowing it is a reason not to start
    memo.fetcher = FetcherOnFirstUse(fetch_policy(keyplane))  # httpx only once a metadata URL is fetched
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
    runtime.sweeper = Sweeper(runtime, TICKS, keyplane.timer_interval, paused=paused)
    memo.background = [asyncio.create_task(_resync(runtime, paused), name="keyplane-resync"),
                       asyncio.create_task(runtime.sweeper.run(), name="keyplane-sweep")]
    log.info("Keyplane operator started (roles %s, base URL %s)", ",".join(keyplane.roles),
             keyplane.default_base_url)


def _pause_state(settings: kopf.OperatorSettings, keyplane: Settings) -> Callable[[], bool]:
    """Kopf's peering pause, for Keyplane's own background tasks (Kopf pauses only its own)."""
    try:
        return operator_paused(settings)
    except PauseStateNotFound as exc:
        if keyplane.peering_name:  # HA mode: acting while another replica is active would be wrong
            raise kopf.PermanentError(str(exc)) from exc
        return lambda: False  # standalone: Kopf never pauses


async def _resync(runtime: Runtime, paused: Callable[[], bool]) -> None:
    """Re-evaluate time-based state (certificate expiry, rotation overlap) without any object change."""
    while True:
        await asyncio.sleep(runtime.settings.resync_interval)
        if runtime.writer is not None and not paused():
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
    for task in getattr(memo, "background", ()):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if runtime is None:
        return
    if runtime.sweeper is not None:
        await runtime.sweeper.stop()
    runtime.closing = True  # nothing still running may use the clients closed below
    if runtime.writer is not None:
        await runtime.writer.stop()
    await memo.fetcher.aclose()
    await memo.kube.aclose()
    runtime.metrics.close()

"""Operator start and stop: build the runtime (API client, fetcher, resolver) and tear it down."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import kopf

from ..orchestrator import flush_namespace
from ..runtime import Runtime
from ..settings import Settings, fetch_policy
from ..sources.dns import DnsPythonTxtResolver
from ..sources.fetcher import MetadataFetcher, SharedMetadataCache
from ..sources.kube import KubeAPI
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
    runtime.writer = NamespaceWriter(keyplane, functools.partial(flush_namespace, runtime))
    memo.runtime = runtime
    memo.resync = asyncio.create_task(_resync(runtime), name="keyplane-resync")
    log.info("Keyplane operator started (roles %s, base URL %s)", ",".join(keyplane.roles),
             keyplane.default_base_url)


async def _resync(runtime: Runtime) -> None:
    """Re-evaluate time-based state (certificate expiry, rotation overlap) without any object change."""
    while True:
        await asyncio.sleep(runtime.settings.resync_interval)
        if runtime.writer is not None:
            runtime.writer.schedule_all()


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    runtime: Runtime | None = getattr(memo, "runtime", None)
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

"""The operator's in-memory state and the per-namespace bundle writer.

Handlers observe (I/O) and put what they found here; the namespace writer, debounced, runs the pure
`reconcile_namespace` over the Kopf indexes plus these observations and writes only what differs:
statuses, the bundle Secret, Events, the consume-identity Deployments' pod-template annotation.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..api.kinds import API_GROUP_VERSION, KINDS_BY_NAME
from ..mergepatch import merge_patch_between
from ..reconcile.bundle import (
    BUNDLE_HASH_ANNOTATION,
    CONSUME_LABEL,
    bundle_secret,
    bundle_sha256,
    parse_bundle_secret,
)
from ..reconcile.conditions import rfc3339
from ..reconcile.identityprovider import IdPObservation
from ..reconcile.model import Event, Snapshot
from ..reconcile.namespace import NamespaceInputs, reconcile_namespace
from ..reconcile.scimtoken import TokenState
from ..reconcile.ssodomain import Claim, DnsObservation
from ..settings import Settings
from ..sources.dns import TxtResolver
from ..sources.fetcher import SharedMetadataCache
from ..sources.kube import KubeAPI, KubeError

log = logging.getLogger("keyplane.operator")

Key = tuple[str, str]  # (namespace, name)


def utcnow() -> datetime:
    return datetime.now(tz=UTC)


@dataclass
class Runtime:
    """Everything one operator process keeps between handler calls."""

    settings: Settings
    kube: KubeAPI
    cache: SharedMetadataCache
    resolver: TxtResolver
    clock: Callable[[], datetime] = utcnow
    idp_observations: dict[Key, IdPObservation] = field(default_factory=dict)
    tokens: dict[Key, TokenState | None] = field(default_factory=dict)
    dns: dict[Key, DnsObservation] = field(default_factory=dict)
    dns_schedule: dict[Key, tuple[datetime, int]] = field(default_factory=dict)  # next check, attempts
    # The status this process last wrote per object, with the generation it was for: the index may
    # lag behind our own write, and comparing against it would write the same status twice.
    written_status: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    bundles: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # namespace -> bundle now in the Secret
    bundle_hashes: dict[str, str | None] = field(default_factory=dict)
    indexes: dict[str, Mapping[Any, Any]] = field(default_factory=dict)
    observed_uids: dict[tuple[str, str, str], str] = field(default_factory=dict)
    writer: NamespaceWriter | None = None
    closing: bool = False  # set by the cleanup handler before the API client closes; timers then stand down

    def capture_indexes(self, kwargs: Mapping[str, Any]) -> None:
        """Kopf hands its live index views only to handlers: keep them for the writer."""
        for name in ("idp_index", "ssod_index", "scim_index", "claims_index"):
            if name in kwargs and name not in self.indexes:
                self.indexes[name] = kwargs[name]

    def snapshots(self, namespace: str) -> list[Snapshot]:
        found: list[Snapshot] = []
        for name in ("idp_index", "ssod_index", "scim_index"):
            index = self.indexes.get(name)
            if index is not None and namespace in index:
                found.extend(index[namespace])
        return found

    def claim_book(self) -> dict[tuple[str, str], list[Claim]]:
        index = self.indexes.get("claims_index")
        if index is None:
            return {}
        return {key: sorted(index[key]) for key in list(index.keys())}

    async def current_bundle(self, namespace: str) -> dict[str, Any] | None:
        """The bundle now in the namespace's Secret, read once per process (then kept up to date)."""
        if namespace not in self.bundles:
            existing = await self.kube.get("v1", "secrets", namespace, self.settings.bundle_secret_name)
            self.bundles[namespace] = parse_bundle_secret(existing)
            annotations = ((existing or {}).get("metadata") or {}).get("annotations") or {}
            self.bundle_hashes[namespace] = annotations.get(BUNDLE_HASH_ANNOTATION) if existing else None
        return self.bundles[namespace]

    def observed(self, snap: Snapshot) -> None:
        """Record which object (uid) the observation under its name belongs to."""
        self.observed_uids[(snap.kind, snap.namespace, snap.name)] = snap.uid

    def forget(self, snap: Snapshot) -> None:
        """Drop a deleted object's observations, unless a re-created namesake already replaced them
        (the old object's DELETED event may arrive after the new object's first observation)."""
        key3 = (snap.kind, snap.namespace, snap.name)
        if self.observed_uids.get(key3, snap.uid) != snap.uid:
            return
        self.observed_uids.pop(key3, None)
        stores: dict[str, dict[Key, Any]] = {
            "IdentityProvider": self.idp_observations, "ScimConnection": self.tokens, "SSODomain": self.dns,
        }
        stores[snap.kind].pop((snap.namespace, snap.name), None)
        self.written_status.pop(key3, None)


class NamespaceWriter:
    """Coalesces bursts of changes per namespace into a handful of writes (debounce with a cap)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._dirty: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.flush_count = 0

    def schedule(self, namespace: str) -> None:
        if namespace not in self._dirty:
            self._dirty[namespace] = asyncio.Event()
            self._tasks[namespace] = asyncio.create_task(self._loop(namespace), name=f"keyplane-writer-{namespace}")
        self._dirty[namespace].set()

    def schedule_all(self, namespaces: Iterable[str] | None = None) -> None:
        for namespace in list(namespaces if namespaces is not None else self._dirty):
            self.schedule(namespace)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        self._dirty.clear()

    async def _loop(self, namespace: str) -> None:
        settings = self.runtime.settings
        dirty = self._dirty[namespace]
        backoff, conflicts = 1.0, 0
        while True:
            await dirty.wait()
            started = time.monotonic()
            while True:
                dirty.clear()
                await asyncio.sleep(settings.bundle_debounce)
                if not dirty.is_set() or time.monotonic() - started >= settings.bundle_max_delay:
                    break
            dirty.clear()
            try:
                await flush_namespace(self.runtime, namespace)
                self.flush_count += 1
                backoff, conflicts = 1.0, 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API is down or conflicting: retry later, never die
                # A conflict only means someone wrote first: reconcile again at once from fresh state.
                # Anything else (5xx, network) backs off exponentially.
                conflicts = conflicts + 1 if isinstance(exc, KubeError) and exc.status == 409 else 0
                conflict = 0 < conflicts <= 5  # a conflict that keeps coming back is treated like any error
                delay = 0.1 if conflict else backoff
                log.warning("namespace %s: writing failed (%s: %s); retrying in %.1fs",
                            namespace, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                if not conflict:
                    backoff = min(backoff * 2, 60.0)
                dirty.set()


def _ready_to_flush(runtime: Runtime, snaps: list[Snapshot]) -> bool:
    """Only write once every object has been observed since start, so a restart never writes a partial bundle."""
    for snap in snaps:
        if snap.deleting:
            continue
        key = (snap.namespace, snap.name)
        if snap.kind == "IdentityProvider":
            obs = runtime.idp_observations.get(key)
            if obs is None or obs.generation != snap.generation:
                return False
        elif (snap.kind == "ScimConnection" and key not in runtime.tokens) or (
            snap.kind == "SSODomain" and key not in runtime.dns
        ):
            return False
    return True


async def flush_namespace(runtime: Runtime, namespace: str) -> None:
    """Reconcile one namespace and write what changed."""
    settings, kube = runtime.settings, runtime.kube
    snaps = runtime.snapshots(namespace)
    if not _ready_to_flush(runtime, snaps):
        return
    snaps = [_with_written_status(runtime, s) for s in snaps]
    previous_bundle = await runtime.current_bundle(namespace)
    inputs = NamespaceInputs(
        namespace=namespace,
        objects=snaps,
        idp_observations={n: o for (ns, n), o in runtime.idp_observations.items() if ns == namespace},
        tokens={n: t for (ns, n), t in runtime.tokens.items() if ns == namespace},
        dns={n: d for (ns, n), d in runtime.dns.items() if ns == namespace},
        claims=runtime.claim_book(),
        previous_bundle=previous_bundle,
    )
    result = reconcile_namespace(inputs, settings, runtime.clock())

    # Bundle first: a status that says Ready must never be seen before the config it announces.
    await _write_bundle(runtime, namespace, snaps, result.data, result.bundle)
    by_key = {(s.kind, s.name): s for s in snaps}
    for (kind, name), outcome in result.results.items():
        snap = by_key[(kind, name)]
        written = runtime.written_status.get((kind, namespace, name))
        if outcome.status != dict(snap.status) and outcome.status != written:
            plural = KINDS_BY_NAME[kind].plural
            try:
                await kube.patch_status(API_GROUP_VERSION, plural, namespace, name,
                                        merge_patch_between(snap.status, outcome.status))
            except KubeError as exc:
                if exc.status == 404:
                    continue  # deleted meanwhile
                raise
            runtime.written_status[(kind, namespace, name)] = outcome.status
        for event in outcome.events:
            await post_event(kube, snap, event, runtime.clock())


def _with_written_status(runtime: Runtime, snap: Snapshot) -> Snapshot:
    """The snapshot as of this process's own last status write (the index may not have caught up)."""
    key = (snap.kind, snap.namespace, snap.name)
    written = runtime.written_status.get(key)
    if written is None:
        return snap
    if written == snap.status:
        # The index has caught up: it holds that status now, so the copy is dropped (3000 objects kept
        # ~5 MB of statuses twice).
        del runtime.written_status[key]
        return snap
    from dataclasses import replace

    return replace(snap, status=written)


async def _write_bundle(
    runtime: Runtime, namespace: str, snaps: list[Snapshot], data: bytes | None, bundle: dict[str, Any] | None
) -> None:
    kube, name = runtime.kube, runtime.settings.bundle_secret_name
    if data is None:
        if runtime.bundle_hashes.get(namespace) is not None:
            await kube.delete("v1", "secrets", namespace, name)
            log.info("namespace %s: no Keyplane objects left, bundle Secret %s deleted", namespace, name)
        runtime.bundles[namespace] = None
        runtime.bundle_hashes[namespace] = None
        return
    digest = bundle_sha256(data)
    if digest == runtime.bundle_hashes.get(namespace):
        # Unchanged content: a read (never a write) confirms the Secret is still there, since the
        # operator does not watch Secrets and garbage collection or a human may have removed it.
        current = await kube.get("v1", "secrets", namespace, name)
        annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
        if annotations.get(BUNDLE_HASH_ANNOTATION) == digest:
            return
        runtime.bundle_hashes[namespace] = digest if current is not None else None
    owners = [s.owner_reference(controller=False) for s in sorted(snaps, key=lambda s: (s.kind, s.name))
              if not s.deleting and s.uid]
    manifest = bundle_secret(name, namespace, data, owners)
    if runtime.bundle_hashes.get(namespace) is None:
        try:
            await kube.create("v1", "secrets", namespace, manifest)
        except KubeError as exc:
            if exc.status != 409:
                raise
            await kube.patch("v1", "secrets", namespace, name, _bundle_patch(manifest))
    else:
        await kube.patch("v1", "secrets", namespace, name, _bundle_patch(manifest))
    runtime.bundles[namespace] = bundle
    runtime.bundle_hashes[namespace] = digest
    log.info("namespace %s: bundle Secret %s written (sha256 %s)", namespace, name, digest[:12])
    await roll_consumers(kube, namespace, digest)


def _bundle_patch(manifest: dict[str, Any]) -> dict[str, Any]:
    meta = manifest["metadata"]
    return {
        "metadata": {"labels": meta["labels"], "annotations": meta["annotations"],
                     "ownerReferences": meta["ownerReferences"]},
        "data": manifest["data"],
    }


async def roll_consumers(kube: KubeAPI, namespace: str, digest: str) -> None:
    """Stamp the bundle hash on consume-identity Deployments, so pods that read config at start restart."""
    deployments = await kube.list("apps/v1", "deployments", namespace, label_selector=f"{CONSUME_LABEL}=true")
    for deployment in deployments:
        template_meta = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
        if (template_meta.get("annotations") or {}).get(BUNDLE_HASH_ANNOTATION) == digest:
            continue
        patch = {"spec": {"template": {"metadata": {"annotations": {BUNDLE_HASH_ANNOTATION: digest}}}}}
        await kube.patch("apps/v1", "deployments", namespace, deployment["metadata"]["name"], patch)
        log.info("namespace %s: Deployment %s rolled for bundle %s", namespace, deployment["metadata"]["name"],
                 digest[:12])


async def post_event(kube: KubeAPI, snap: Snapshot, event: Event, now: datetime) -> None:
    """Post a core/v1 Event; failures are logged, never raised (an Event is not worth a retry loop)."""
    stamp = rfc3339(now)
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{snap.name}.{secrets.token_hex(8)}", "namespace": snap.namespace},
        "involvedObject": snap.event_target(),
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:1024],
        "source": {"component": "keyplane"},
        "reportingComponent": "keyplane.dev/operator",
        "reportingInstance": "keyplane",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    level = logging.WARNING if event.type == "Warning" else logging.INFO
    log.log(level, "%s %s/%s: %s: %s", snap.kind, snap.namespace, snap.name, event.reason, event.message)
    try:
        await kube.create("v1", "events", snap.namespace, body)
    except Exception as exc:
        log.warning("could not post Event %s for %s/%s: %s", event.reason, snap.namespace, snap.name, exc)

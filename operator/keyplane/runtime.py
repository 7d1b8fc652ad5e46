"""What one operator process keeps between passes: observations, what it last wrote, Kopf's indexes.

No Kopf here: handlers fill it, the orchestrator reads it, and `keyplane render` builds one over files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .packed import unpacked
from .reconcile.bundle import BUNDLE_HASH_ANNOTATION, parse_bundle_secret
from .reconcile.identityprovider import IdPObservation
from .reconcile.model import Snapshot
from .reconcile.namespace import NamespaceInputs
from .reconcile.scimtoken import TokenState
from .reconcile.ssodomain import Claim, DnsObservation, claim_scope
from .settings import Settings
from .sources.dns import TxtResolver
from .sources.metadata_cache import SharedMetadataCache
from .writer.status import with_written_status
from .writer.store import ClusterStore

if TYPE_CHECKING:
    from .metrics import OperatorMetrics, OperatorState
    from .sweep import Sweeper
    from .writer.debounce import NamespaceWriter

Key = tuple[str, str]  # (namespace, name)


def utcnow() -> datetime:
    return datetime.now(tz=UTC)


@dataclass
class Runtime:
    """Everything one operator process (or one render) keeps between handler calls."""

    settings: Settings
    kube: ClusterStore
    cache: SharedMetadataCache | None
    resolver: TxtResolver
    clock: Callable[[], datetime] = utcnow
    post_events: bool = True  # render prints objects, not Events
    idp_observations: dict[Key, IdPObservation] = field(default_factory=dict)
    tokens: dict[Key, TokenState | None] = field(default_factory=dict)
    dns: dict[Key, DnsObservation] = field(default_factory=dict)
    dns_schedule: dict[Key, tuple[datetime, int]] = field(default_factory=dict)  # next check, attempts
    # The status this process last wrote per object, with the generation it was for: the index may
    # lag behind our own write, and comparing against it would write the same status twice.
    written_status: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    bundles: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # namespace -> bundle now in the Secret
    bundle_hashes: dict[str, str | None] = field(default_factory=dict)
    bundle_sizes: dict[str, int] = field(default_factory=dict)  # namespace -> bytes of the bundle in the Secret
    sp_metadata: dict[Key, str] = field(default_factory=dict)  # (namespace, IdP) -> sha256 of the settings written
    indexes: dict[str, Mapping[Any, Any]] = field(default_factory=dict)
    observed_uids: dict[tuple[str, str, str], str] = field(default_factory=dict)
    writer: NamespaceWriter | None = None
    sweeper: Sweeper | None = None  # the periodic checks (operator only)
    _metrics: OperatorMetrics | None = field(default=None, init=False, repr=False)
    started_at: datetime = field(default_factory=utcnow)  # when this process (or render) began
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
                found.extend(unpacked(entry) for entry in index[namespace])
        return found

    def claim_book(self, scope: str | None = None) -> dict[tuple[str, str], list[Claim]]:
        """Every claim, or only those of one scope (a namespace, or "" cluster-wide): an SSODomain's claims
        are weighed against its own scope's only, and each SSODomain scanned the whole book for them."""
        index = self.indexes.get("claims_index")
        if index is None:
            return {}
        return {key: sorted(index[key]) for key in list(index.keys()) if scope is None or key[0] == scope}

    def namespace_inputs(
        self, namespace: str, snaps: list[Snapshot], previous_bundle: Mapping[str, Any] | None
    ) -> NamespaceInputs:
        """The pure reconcile's input: the namespace's objects and everything observed about them."""
        return NamespaceInputs(
            namespace=namespace,
            objects=snaps,
            idp_observations={n: o for (ns, n), o in self.idp_observations.items() if ns == namespace},
            tokens={n: t for (ns, n), t in self.tokens.items() if ns == namespace},
            dns={n: d for (ns, n), d in self.dns.items() if ns == namespace},
            claims=self.claim_book(claim_scope(namespace, self.settings.domain_scope == "Cluster")),
            previous_bundle=previous_bundle,
        )

    async def current_bundle(self, namespace: str) -> dict[str, Any] | None:
        """The bundle now in the namespace's Secret, read once per process (then kept up to date)."""
        if namespace not in self.bundles:
            existing = await self.kube.get("v1", "secrets", namespace, self.settings.bundle_secret_name)
            self.bundles[namespace] = parse_bundle_secret(existing)
            annotations = ((existing or {}).get("metadata") or {}).get("annotations") or {}
            self.bundle_hashes[namespace] = annotations.get(BUNDLE_HASH_ANNOTATION) if existing else None
        return self.bundles[namespace]

    @property
    def metrics(self) -> OperatorMetrics:
        """The operator's Prometheus registry and counters, made when first asked for: the operator's
        start-up asks at once; `keyplane render` never does (nor imports prometheus-client, ~25 ms)."""
        if self._metrics is None:
            from .metrics import OperatorMetrics

            self._metrics = OperatorMetrics()
        return self._metrics

    def count_bundle_write(self, operation: str) -> None:
        """Count a write of a bundle Secret (create, update, delete) where metrics are kept, not in render."""
        if self._metrics is not None:
            self._metrics.bundle_written(operation)

    def metrics_state(self) -> OperatorState:
        """What the metrics collector exports at a scrape: every indexed object with its current status."""
        from .metrics import OperatorState

        objects = [with_written_status(self, s) for ns in self.namespaces() for s in self.snapshots(ns)]
        return OperatorState(objects, dict(self.idp_observations), dict(self.tokens), dict(self.bundle_sizes))

    def namespaces(self) -> set[str]:
        return {ns for name in ("idp_index", "ssod_index", "scim_index") for ns in (self.indexes.get(name) or {})}

    def observed(self, snap: Snapshot) -> None:
        """Record which object (uid) the observation under its name belongs to."""
        self.observed_uids[snap.key] = snap.uid

    def forget(self, snap: Snapshot) -> None:
        """Drop a deleted object's observations, unless a re-created namesake already replaced them
        (the old object's DELETED event may arrive after the new object's first observation)."""
        key3 = snap.key
        if self.observed_uids.get(key3, snap.uid) != snap.uid:
            return
        self.observed_uids.pop(key3, None)
        stores: dict[str, dict[Key, Any]] = {
            "IdentityProvider": self.idp_observations, "ScimConnection": self.tokens, "SSODomain": self.dns,
        }
        stores[snap.kind].pop((snap.namespace, snap.name), None)
        self.written_status.pop(key3, None)

    def schedule_after(self, snap: Snapshot) -> None:
        """Ask the namespace writer for a pass where this object's change can show."""
        if self.writer is None:
            return
        if snap.kind == "SSODomain" and self.settings.domain_scope == "Cluster":
            # A cluster-wide claim taken or released here may move a domain in another namespace.
            namespaces = set(self.indexes.get("ssod_index") or {}) | {ns for (ns, _n) in self.dns}
            self.writer.schedule_all(namespaces | {snap.namespace})
        else:
            self.writer.schedule(snap.namespace)

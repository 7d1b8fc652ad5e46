"""Per-object series computed from the operator's current state at scrape time.

A custom collector instead of gauges that handlers set: what is exported is always what the operator
holds now, so an object that is deleted (or a certificate that left the metadata) simply stops being
exported; there is no series to forget.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import ValidationError

from ..api.common import parse_duration
from ..api.identityprovider import IdentityProviderSpec
from ..api.kinds import KINDS
from ..api.scimconnection import ScimConnectionSpec
from ..observe.identityprovider import refresh_interval
from ..reconcile.bundlefit import SECRET_DATA_MAX_BYTES, UPDATE_HEADROOM_BYTES
from ..reconcile.conditions import READY, STALLED
from ..reconcile.identityprovider import IdPObservation
from ..reconcile.model import Snapshot
from ..reconcile.scimtoken import TokenState

Key = tuple[str, str]  # (namespace, name)
#: Length of the SHA-256 prefix that labels a certificate: enough to tell rollover certificates apart.
SHA256_LABEL_CHARS = 16


@dataclass(frozen=True)
class OperatorState:
    """What the collector reads: every watched object (with the status this process last wrote) and the
    observations the operator keeps about them."""

    objects: Sequence[Snapshot] = ()
    identity_providers: Mapping[Key, IdPObservation] = field(default_factory=dict)
    tokens: Mapping[Key, TokenState | None] = field(default_factory=dict)
    bundle_sizes: Mapping[str, int] = field(default_factory=dict)  # namespace -> bytes of its bundle Secret


def _timestamp(moment: datetime) -> float:
    """Whole seconds, as status and the token Secret record times (a restart then exports the same value)."""
    return float(int(moment.timestamp()))


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return {}


def object_state(snap: Snapshot) -> str:
    """Ready, Stalled or Reconciling, as kstatus reads the conditions (Stalled wins; a status written
    for an older generation is still Reconciling)."""
    status = snap.status
    if _condition(status, STALLED).get("status") == "True":
        return "Stalled"
    current = status.get("observedGeneration") == snap.generation
    if current and _condition(status, READY).get("status") == "True":
        return "Ready"
    return "Reconciling"


class StateCollector(Collector):
    """Computes the per-object gauges from `state()` on every scrape."""

    def __init__(self, state: Callable[[], OperatorState]) -> None:
        self._state = state

    def describe(self) -> list[Metric]:
        return list(self._families().values())

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        families = self._families()
        by_kind: Counter[tuple[str, str]] = Counter()
        for snap in state.objects:
            if snap.deleting:
                continue
            phase = object_state(snap)
            by_kind[(snap.kind, phase)] += 1
            labels = [snap.kind, snap.namespace, snap.name]
            families["ready"].add_metric(labels, 1.0 if phase == "Ready" else 0.0)
            families["stalled"].add_metric(labels, 1.0 if phase == "Stalled" else 0.0)
            key = (snap.namespace, snap.name)
            if snap.kind == "IdentityProvider":
                _identity_provider(families, snap, state.identity_providers.get(key))
            elif snap.kind == "ScimConnection":
                _scim_connection(families, snap, state.tokens.get(key))
            elif snap.kind == "SSODomain":
                _sso_domain(families, snap)
        for namespace, size in sorted(state.bundle_sizes.items()):
            families["bundle"].add_metric([namespace], float(size))
        for kind in KINDS:
            for phase in ("Ready", "Stalled", "Reconciling"):
                families["objects"].add_metric([kind.kind, phase], float(by_kind[(kind.kind, phase)]))
        yield from families.values()

    @staticmethod
    def _families() -> dict[str, Any]:
        obj = ["kind", "namespace", "name"]
        nn = ["namespace", "name"]
        return {
            "objects": GaugeMetricFamily(
                "keyplane_objects", "Keyplane objects by kind and state (Ready, Stalled, Reconciling).",
                labels=["kind", "state"]),
            "ready": GaugeMetricFamily(
                "keyplane_object_ready", "1 when the object is Ready for its current generation, else 0.", labels=obj),
            "stalled": GaugeMetricFamily(
                "keyplane_object_stalled", "1 when the object is Stalled (needs a change by a user), else 0.",
                labels=obj),
            "cert": GaugeMetricFamily(
                "keyplane_identityprovider_certificate_not_after_timestamp_seconds",
                "Expiry (notAfter) of each IdP signing certificate in use, by SHA-256 prefix.",
                labels=[*nn, "sha256"]),
            "success": GaugeMetricFamily(
                "keyplane_identityprovider_metadata_last_success_timestamp_seconds",
                "When the metadata or discovery document in use was last confirmed current (a 200 or 304, "
                "or the operator's start restoring it from the bundle).", labels=nn),
            "interval": GaugeMetricFamily(
                "keyplane_identityprovider_metadata_refresh_interval_seconds",
                "The refresh interval of a metadata URL or OIDC discovery.", labels=nn),
            "fetches": CounterMetricFamily(
                "keyplane_identityprovider_metadata_fetches",
                "Reads of a metadata URL or OIDC discovery by result: ok, not_modified, or the refusal reason.",
                labels=[*nn, "result"]),
            "issued": GaugeMetricFamily(
                "keyplane_scimconnection_token_issued_timestamp_seconds",
                "When the current SCIM token was issued.", labels=nn),
            "rotation": GaugeMetricFamily(
                "keyplane_scimconnection_token_rotation_timestamp_seconds",
                "When the current SCIM token is due for rotation (absent when rotation is disabled).", labels=nn),
            "overlap": GaugeMetricFamily(
                "keyplane_scimconnection_previous_token_expiry_timestamp_seconds",
                "When the previous SCIM token stops working (absent outside a rotation overlap).", labels=nn),
            "bundle": GaugeMetricFamily(
                "keyplane_bundle_bytes",
                f"Size of the namespace's identity bundle in its Secret (the API server refuses more than "
                f"{SECRET_DATA_MAX_BYTES} bytes; new entries stop {UPDATE_HEADROOM_BYTES} bytes short of that, "
                "and objects left out report BundleTooLarge).",
                labels=["namespace"]),
            "domains": GaugeMetricFamily(
                "keyplane_ssodomain_domains", "Domains of an SSODomain by verification state.",
                labels=[*nn, "verified"]),
        }


def _identity_provider(families: dict[str, Any], snap: Snapshot, obs: IdPObservation | None) -> None:
    labels = [snap.namespace, snap.name]
    try:
        interval = refresh_interval(IdentityProviderSpec.model_validate(snap.spec))
    except (ValidationError, ValueError):
        interval = None
    if interval is not None:
        families["interval"].add_metric(labels, interval.total_seconds())
    if obs is None:
        return
    if obs.saml is not None:
        for cert in obs.saml.signing_certificates:
            prefix = cert.sha256.replace(":", "").lower()[:SHA256_LABEL_CHARS]
            families["cert"].add_metric([*labels, prefix], _timestamp(cert.not_after))
    if obs.succeeded_at is not None and interval is not None:
        families["success"].add_metric(labels, _timestamp(obs.succeeded_at))
    for result, count in sorted(obs.fetches.items()):
        families["fetches"].add_metric([*labels, result], float(count))


def _scim_connection(families: dict[str, Any], snap: Snapshot, token: TokenState | None) -> None:
    if token is None:
        return
    labels = [snap.namespace, snap.name]
    families["issued"].add_metric(labels, _timestamp(token.issued_at))
    try:
        interval: timedelta | None = parse_duration(ScimConnectionSpec.model_validate(snap.spec).token.rotationInterval)
    except (ValidationError, ValueError):  # an invalid spec: the reconcile reports it; nothing is planned
        interval = None
    if interval is not None and interval.total_seconds() > 0:
        families["rotation"].add_metric(labels, _timestamp(token.issued_at + interval))
    if token.previous_sha256 and token.previous_expires_at is not None:
        families["overlap"].add_metric(labels, _timestamp(token.previous_expires_at))


def _sso_domain(families: dict[str, Any], snap: Snapshot) -> None:
    verified = pending = 0
    for domain in snap.status.get("domains") or []:
        if isinstance(domain, Mapping):
            if domain.get("verified") is True:
                verified += 1
            else:
                pending += 1
    families["domains"].add_metric([snap.namespace, snap.name, "true"], float(verified))
    families["domains"].add_metric([snap.namespace, snap.name, "false"], float(pending))

"""The reconcile of one namespace: every object's status and the identity bundle, in one pure pass.

Cross-object rules live here, where every input is at hand: an SSODomain or ScimConnection follows its
IdentityProvider, deleting an IdentityProvider takes its dependants out of the bundle, and an object that
cannot be used right now keeps its last good contribution (read back from the previous bundle).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..settings import Settings
from .bundlefit import DOMAINS, IDENTITY_PROVIDERS, SCIM, SECRET_DATA_MAX_BYTES, UPDATE_HEADROOM_BYTES, fit_bundle
from .conditions import READY, RECONCILING, STALLED, Check, Outcome, Phase, is_true
from .identityprovider import IdPObservation, base_url, reconcile_identity_provider
from .model import KindResult, Snapshot
from .result import finish
from .scimconnection import reconcile_scim_connection
from .scimtoken import TokenState
from .ssodomain import ClaimBook, DnsObservation, IdPState, reconcile_sso_domain

BUNDLE_TOO_LARGE = "BundleTooLarge"
IDENTITY_PROVIDER = "IdentityProvider"
SSO_DOMAIN = "SSODomain"
SCIM_CONNECTION = "ScimConnection"


@dataclass
class NamespaceInputs:
    """Everything observed about one namespace."""

    namespace: str
    objects: list[Snapshot]
    idp_observations: Mapping[str, IdPObservation] = field(default_factory=dict)
    tokens: Mapping[str, TokenState | None] = field(default_factory=dict)
    dns: Mapping[str, DnsObservation] = field(default_factory=dict)
    claims: ClaimBook = field(default_factory=dict)
    previous_bundle: Mapping[str, Any] | None = None


@dataclass
class NamespaceResult:
    results: dict[tuple[str, str], KindResult]
    bundle: dict[str, Any] | None  # None: no objects left, the bundle Secret goes away
    data: bytes | None


def reconcile_namespace(inputs: NamespaceInputs, settings: Settings, now: datetime) -> NamespaceResult:
    live = sorted((o for o in inputs.objects if not o.deleting), key=lambda o: (o.kind, o.name))
    results: dict[tuple[str, str], KindResult] = {}
    idp_entries, idp_states = _identity_providers(live, inputs, settings, now, results)

    def idp_state(snap: Snapshot) -> IdPState | None:
        ref_block = snap.spec.get("identityProviderRef")
        ref = ref_block.get("name") if isinstance(ref_block, dict) else None
        if not isinstance(ref, str) or not ref:
            return None
        return idp_states.get(ref, IdPState(exists=False, ready=False, serving=False))

    domain_entries: dict[str, dict[str, Any]] = {}
    for snap in (o for o in live if o.kind == SSO_DOMAIN):
        result = reconcile_sso_domain(
            snap,
            inputs.claims,
            idp_state(snap),
            inputs.dns.get(snap.name),
            cluster_scoped=settings.domain_scope == "Cluster",
            now=now,
        )
        results[(snap.kind, snap.name)] = result
        domain_entries.update(result.entry or {})

    scim_entries: dict[str, dict[str, Any]] = {}
    previous_scim = (inputs.previous_bundle or {}).get(SCIM) or {}
    for snap in (o for o in live if o.kind == SCIM_CONNECTION):
        result = reconcile_scim_connection(
            snap, inputs.tokens.get(snap.name), idp_state(snap), previous_scim.get(snap.name), settings, now
        )
        results[(snap.kind, snap.name)] = result
        if result.entry is not None:
            scim_entries[snap.name] = result.entry

    if not live:
        return NamespaceResult(results, None, None)
    fit = fit_bundle(
        settings.roles,
        {IDENTITY_PROVIDERS: idp_entries, DOMAINS: domain_entries, SCIM: scim_entries},
        inputs.previous_bundle,
        {key: _entry_keys(key, result.entry) for key, result in results.items()},
        limit=SECRET_DATA_MAX_BYTES,
        headroom=UPDATE_HEADROOM_BYTES,
    )
    for snap in (o for o in live if (o.kind, o.name) in fit.refused):
        results[(snap.kind, snap.name)] = _left_out(snap, results[(snap.kind, snap.name)], fit.wanted_bytes, now)
    return NamespaceResult(results, fit.bundle, fit.data)


def _entry_keys(key: tuple[str, str], entry: Any) -> list[str]:
    """An object's keys in its bundle section: an SSODomain's entry is a table of its domains."""
    kind, name = key
    if entry is None:
        return []
    return list(entry) if kind == SSO_DOMAIN else [name]


def _left_out(snap: Snapshot, result: KindResult, wanted_bytes: int, now: datetime) -> KindResult:
    """The result of an object whose change did not fit in the bundle: its kind-specific conditions as
    reconciled, every other status field as it was (what the bundle still serves), and Stalled."""
    status = {k: v for k, v in snap.status.items() if k not in ("conditions", "observedGeneration")}
    checks = [Check(c["type"], c["status"] == "True", c["reason"], c.get("message", ""))
              for c in result.status.get("conditions") or [] if c["type"] not in (READY, RECONCILING, STALLED)]
    message = (
        f"Not applied: with every change, namespace {snap.namespace}'s identity bundle would be "
        f"{wanted_bytes / 2**20:.2f} MiB. A Kubernetes Secret holds {SECRET_DATA_MAX_BYTES / 2**20:.2f} MiB, and "
        f"new entries stop {UPDATE_HEADROOM_BYTES // 1024} KiB short of that, kept for changes to the entries it "
        "serves; so this object's change is left out of it (the bundle keeps its previous entry, if any). "
        "Move some IdentityProviders, with their SSODomains and ScimConnections, to another namespace, or "
        "delete ones no longer used."
    )
    return finish(snap, status, checks, Outcome(Phase.STALLED, BUNDLE_TOO_LARGE, message), None, now)


def _identity_providers(
    live: list[Snapshot], inputs: NamespaceInputs, settings: Settings, now: datetime,
    results: dict[tuple[str, str], KindResult],
) -> tuple[dict[str, dict[str, Any]], dict[str, IdPState]]:
    """Reconcile the IdPs first: (bundle entries, the state their dependants follow)."""
    previous = (inputs.previous_bundle or {}).get(IDENTITY_PROVIDERS) or {}
    entries: dict[str, dict[str, Any]] = {}
    states: dict[str, IdPState] = {}
    for snap in (o for o in live if o.kind == IDENTITY_PROVIDER):
        result = reconcile_identity_provider(
            snap, inputs.idp_observations.get(snap.name), previous.get(snap.name), settings, now
        )
        results[(snap.kind, snap.name)] = result
        if result.entry is not None:
            entries[snap.name] = result.entry
        ready_cond: dict[str, Any] = next((c for c in result.status["conditions"] if c["type"] == READY), {})
        states[snap.name] = IdPState(
            exists=True,
            ready=is_true(result.status, READY),
            serving=result.entry is not None,
            reason=str(ready_cond.get("reason", "")),
            base_url=base_url(dict(snap.spec), settings),
        )
    return entries, states

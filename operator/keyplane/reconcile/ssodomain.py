"""Reconcile of an SSODomain: domain claims, its IdP's readiness, DNS verification, bundle entries.

Who owns a domain, which names can be claimed, which break-glass users go where and what counts as
verified are decided by :mod:`keyplane.policy`; this module turns the decisions into status,
conditions and the bundle's domain entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..api.ssodomain import SSODomainSpec
from ..policy.access import break_glass_of
from ..policy.claims import Claim, ClaimDecision, decide_claim
from ..policy.domains import claimable_problem
from ..policy.verification import is_verified
from .conditions import Check, Outcome, Phase
from .model import KindResult, Snapshot
from .result import finish
from .validation import spec_problem

DOMAINS_VERIFIED = "DomainsVerified"
IDENTITY_PROVIDER_READY = "IdentityProviderReady"
CHALLENGE_PREFIX = "_keyplane-challenge."


# domain -> claimants, oldest first. Keyed by (scope, domain): scope is the namespace, or "" cluster-wide.
ClaimBook = Mapping[tuple[str, str], list[Claim]]


def claim_scope(namespace: str, cluster_scoped: bool) -> str:
    return "" if cluster_scoped else namespace


def claims_of(snap: Snapshot, cluster_scoped: bool) -> list[tuple[tuple[str, str], Claim]]:
    """The claims one SSODomain makes (what the Kopf index stores for it)."""
    if snap.deleting:
        return []
    domains = snap.spec.get("domains")
    if not isinstance(domains, list):
        return []
    ref = snap.spec.get("identityProviderRef")
    idp = ref.get("name") if isinstance(ref, dict) else None
    claim = Claim(snap.creation_timestamp, snap.namespace, snap.name, snap.uid, str(idp or ""))
    scope = claim_scope(snap.namespace, cluster_scoped)
    # A name that cannot be claimed (a public suffix, not canonical) blocks no one: it is refused.
    names = dict.fromkeys(d for d in domains if isinstance(d, str) and claimable_problem(d) is None)
    return [((scope, name), claim) for name in names]


def build_claim_book(snaps: Iterable[Snapshot], cluster_scoped: bool) -> dict[tuple[str, str], list[Claim]]:
    book: dict[tuple[str, str], list[Claim]] = {}
    for snap in snaps:
        for key, claim in claims_of(snap, cluster_scoped):
            book.setdefault(key, []).append(claim)
    return {key: sorted(claims) for key, claims in book.items()}


def challenge_value(uid: str, namespace: str, name: str, domain: str) -> str:
    """A stable TXT value per SSODomain and domain: derived from the API-assigned uid, not from the name."""
    seed = uid or f"render:{namespace}/{name}"
    digest = hashlib.sha256(f"keyplane-domain-challenge\x00{seed}\x00{domain}".encode()).hexdigest()
    return f"keyplane-verification={digest[:40]}"


@dataclass(frozen=True)
class DnsObservation:
    """The DNS verification results for one SSODomain."""

    verified: frozenset[str] = frozenset()
    last_error: str | None = None


@dataclass(frozen=True)
class IdPState:
    """What an SSODomain or ScimConnection needs to know about its IdentityProvider."""

    exists: bool
    ready: bool
    serving: bool  # has a config in the bundle (possibly last-known-good)
    reason: str = ""
    base_url: str | None = None  # the IdP's spec.serviceProvider.baseURL, shared by its SCIM endpoint


def _claim_decisions(
    snap: Snapshot, spec: SSODomainSpec, claims: ClaimBook, scope: str, domains: list[str]
) -> list[ClaimDecision]:
    """Does this SSODomain own each of these domains (keyplane.policy.claims)?"""
    ref = spec.identityProviderRef.name
    mine = Claim(snap.creation_timestamp, snap.namespace, snap.name, snap.uid, ref)
    in_scope = [(domain, c) for (s, domain), found in claims.items() if s == scope for c in found]
    return [decide_claim(domain, mine, in_scope) for domain in domains]


def _verification(
    snap: Snapshot, spec: SSODomainSpec, domain_status: list[dict[str, Any]], dns: DnsObservation | None
) -> tuple[list[dict[str, str]] | None, Check]:
    """The TXT records to publish (method DNS) and the DomainsVerified condition."""
    if spec.verification.method != "DNS":
        return None, Check(DOMAINS_VERIFIED, True, "NotRequired", "verification.method is None.")
    records = [
        {
            "domain": d,
            "recordName": CHALLENGE_PREFIX + d,
            "recordValue": challenge_value(snap.uid, snap.namespace, snap.name, d),
        }
        for d in spec.domains
    ]
    pending = [str(d["name"]) for d in domain_status if not d["verified"]]
    if not pending:
        return records, Check(DOMAINS_VERIFIED, True, "Verified", "Every domain's TXT record was found.")
    detail = f" Last check: {dns.last_error}." if dns and dns.last_error else ""
    return records, Check(
        DOMAINS_VERIFIED,
        False,
        "VerificationPending",
        f"Publish the TXT records listed in status.verification for {', '.join(pending)}; "
        f"the operator re-checks periodically.{detail}",
    )


def _idp_check(ref: str, namespace: str, idp: IdPState | None) -> Check:
    if idp is None or not idp.exists:
        return Check(IDENTITY_PROVIDER_READY, False, "IdentityProviderNotFound",
                     f"IdentityProvider {ref} does not exist in namespace {namespace}.")
    if not idp.ready:
        return Check(IDENTITY_PROVIDER_READY, False, "IdentityProviderNotReady",
                     f"IdentityProvider {ref} is not Ready ({idp.reason}): see its status.")
    return Check(IDENTITY_PROVIDER_READY, True, "Ready", f"IdentityProvider {ref} is Ready.")


def _entries(spec: SSODomainSpec, domain_status: list[dict[str, Any]], idp: IdPState | None) -> dict[str, Any]:
    """The bundle's domain entries: owned and verified domains, once the IdP has a config to serve."""
    if idp is None or not idp.serving:
        return {}
    return {
        d["name"]: {
            "identityProvider": spec.identityProviderRef.name,
            "enforcement": spec.enforcement,
            "breakGlassUsers": break_glass_of(d["name"], spec.breakGlassUsers),
        }
        for d in domain_status
        if d["owned"] and d["verified"]
    }


def _outcome(
    snap: Snapshot, spec: SSODomainSpec, invalid: list[str], taken: list[str], idp: IdPState | None, pending: bool
) -> Outcome:
    ref = spec.identityProviderRef.name
    if invalid:
        return Outcome(Phase.STALLED, "InvalidDomain", "spec.domains: " + "; ".join(invalid) + ".")
    if taken:
        return Outcome(Phase.STALLED, "DomainClaimed",
                       f"Already claimed by an older SSODomain: {', '.join(taken)}. "
                       "Remove them here or from the owner.")
    if idp is None or not idp.exists:
        return Outcome(Phase.PROGRESSING, "IdentityProviderNotFound",
                       f"Waiting for IdentityProvider {ref} in namespace {snap.namespace}.")
    if not idp.ready:
        return Outcome(Phase.PROGRESSING, "IdentityProviderNotReady",
                       f"Waiting for IdentityProvider {ref} to be Ready ({idp.reason}).")
    if pending:
        return Outcome(Phase.PROGRESSING, "VerificationPending",
                       "Publish the TXT records listed in status.verification; the domains are enforced "
                       "once verified.")
    return Outcome(Phase.READY, "Ready", f"{', '.join(spec.domains)} log in through {ref} ({spec.enforcement}).")


def reconcile_sso_domain(
    snap: Snapshot,
    claims: ClaimBook,
    idp: IdPState | None,
    dns: DnsObservation | None,
    *,
    cluster_scoped: bool,
    now: datetime,
) -> KindResult:
    """Status and bundle entries ({domain: entry}) of one SSODomain."""
    status: dict[str, Any] = {}
    try:
        spec = SSODomainSpec.model_validate(snap.spec)
    except ValidationError as exc:
        problem = spec_problem(exc)
        return finish(snap, status, [], Outcome(Phase.STALLED, problem.reason, problem.message), {}, now)
    # A name that cannot be claimed is refused; the other domains keep working (no lost config).
    invalid = {d: p for d in spec.domains if (p := claimable_problem(d)) is not None}

    def label(claim: Claim) -> str:
        return claim.owner_label if cluster_scoped else claim.name

    valid = [d for d in spec.domains if d not in invalid]
    decisions = _claim_decisions(snap, spec, claims, claim_scope(snap.namespace, cluster_scoped), valid)
    verified = dns.verified if dns is not None else frozenset()
    domain_status: list[dict[str, Any]] = [
        {
            "name": d.domain,
            "verified": is_verified(d.domain, spec.verification.method, verified),
            "claimedBy": snap.name if d.owner is None else label(d.owner),
            "owned": d.owned,
        }
        for d in decisions
    ]
    records, verification_check = _verification(snap, spec, domain_status, dns)
    checks = [verification_check, _idp_check(spec.identityProviderRef.name, snap.namespace, idp)]
    entries = _entries(spec, domain_status, idp)
    taken = [d.reason(label(d.owner)) for d in decisions if d.owner is not None]
    pending = spec.verification.method == "DNS" and len(entries) < sum(1 for d in decisions if d.owned)
    shown = {d["name"]: {k: v for k, v in d.items() if k != "owned"} for d in domain_status}
    status["domains"] = [shown.get(d, {"name": d, "verified": False}) for d in spec.domains]
    if records is not None:
        status["verification"] = records
    outcome = _outcome(snap, spec, list(invalid.values()), taken, idp, pending)
    return finish(snap, status, checks, outcome, entries, now)

"""Reconcile of an SSODomain: domain claims (oldest wins), its IdP's readiness, DNS verification."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..api.ssodomain import SSODomainSpec
from .conditions import Check, Outcome, Phase
from .model import KindResult, Snapshot
from .result import finish
from .validation import spec_problem

DOMAINS_VERIFIED = "DomainsVerified"
IDENTITY_PROVIDER_READY = "IdentityProviderReady"
CHALLENGE_PREFIX = "_keyplane-challenge."


@dataclass(frozen=True, order=True)
class Claim:
    """One SSODomain's claim on a domain; ordering puts the oldest (then by name) first."""

    created: str
    namespace: str
    name: str
    uid: str = field(compare=False, default="")

    @property
    def owner_label(self) -> str:
        return f"{self.namespace}/{self.name}"


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
    claim = Claim(snap.creation_timestamp, snap.namespace, snap.name, snap.uid)
    scope = claim_scope(snap.namespace, cluster_scoped)
    names = dict.fromkeys(d.lower() for d in domains if isinstance(d, str))
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
    checks: list[Check] = []
    try:
        spec = SSODomainSpec.model_validate(snap.spec)
    except ValidationError as exc:
        problem = spec_problem(exc)
        return finish(snap, status, checks, Outcome(Phase.STALLED, problem.reason, problem.message), {}, now)

    scope = claim_scope(snap.namespace, cluster_scoped)
    owned: list[tuple[str, str]] = []
    taken: list[tuple[str, str]] = []
    domain_status = []
    for domain in spec.domains:
        claimants = claims.get((scope, domain), [])
        owner = claimants[0] if claimants else None
        mine = owner is None or (owner.namespace, owner.name) == (snap.namespace, snap.name)
        owner_label = snap.name if mine else (owner.owner_label if cluster_scoped else owner.name)  # type: ignore[union-attr]
        (owned if mine else taken).append((domain, owner_label))
        verified = spec.verification.method == "None" or (dns is not None and domain in dns.verified)
        domain_status.append({"name": domain, "verified": verified, "claimedBy": owner_label})
    status["domains"] = domain_status

    if spec.verification.method == "DNS":
        status["verification"] = [
            {
                "domain": d,
                "recordName": CHALLENGE_PREFIX + d,
                "recordValue": challenge_value(snap.uid, snap.namespace, snap.name, d),
            }
            for d in spec.domains
        ]
        pending = [d["name"] for d in domain_status if not d["verified"]]
        if pending:
            detail = f" Last check: {dns.last_error}." if dns and dns.last_error else ""
            pending_names = [str(name) for name in pending]
            checks.append(
                Check(
                    DOMAINS_VERIFIED,
                    False,
                    "VerificationPending",
                    f"Publish the TXT records listed in status.verification for {', '.join(pending_names)}; "
                    f"the operator re-checks periodically.{detail}",
                )
            )
        else:
            checks.append(Check(DOMAINS_VERIFIED, True, "Verified", "Every domain's TXT record was found."))
    else:
        checks.append(Check(DOMAINS_VERIFIED, True, "NotRequired", "verification.method is None."))

    ref = spec.identityProviderRef.name
    if idp is None or not idp.exists:
        checks.append(Check(IDENTITY_PROVIDER_READY, False, "IdentityProviderNotFound",
                            f"IdentityProvider {ref} does not exist in namespace {snap.namespace}."))
    elif not idp.ready:
        checks.append(Check(IDENTITY_PROVIDER_READY, False, "IdentityProviderNotReady",
                            f"IdentityProvider {ref} is not Ready ({idp.reason}): see its status."))
    else:
        checks.append(Check(IDENTITY_PROVIDER_READY, True, "Ready", f"IdentityProvider {ref} is Ready."))

    entries: dict[str, dict[str, Any]] = {}
    if idp is not None and idp.serving:
        for domain, _owner in owned:
            if any(d["name"] == domain and d["verified"] for d in domain_status):
                entries[domain] = {
                    "identityProvider": ref,
                    "enforcement": spec.enforcement,
                    "breakGlassUsers": sorted(
                        u.lower() for u in spec.breakGlassUsers if u.lower().rsplit("@", 1)[-1] == domain
                    ),
                }

    if taken:
        named = ", ".join(f"{d} (owned by {o})" for d, o in taken)
        outcome = Outcome(Phase.STALLED, "DomainClaimed",
                          f"Already claimed by an older SSODomain: {named}. Remove them here or from the owner.")
    elif idp is None or not idp.exists:
        outcome = Outcome(Phase.PROGRESSING, "IdentityProviderNotFound",
                          f"Waiting for IdentityProvider {ref} in namespace {snap.namespace}.")
    elif not idp.ready:
        outcome = Outcome(Phase.PROGRESSING, "IdentityProviderNotReady",
                          f"Waiting for IdentityProvider {ref} to be Ready ({idp.reason}).")
    elif spec.verification.method == "DNS" and len(entries) < len(owned):
        outcome = Outcome(Phase.PROGRESSING, "VerificationPending",
                          "Publish the TXT records listed in status.verification; the domains are enforced "
                          "once verified.")
    else:
        outcome = Outcome(Phase.READY, "Ready",
                          f"{', '.join(spec.domains)} log in through {ref} ({spec.enforcement}).")
    return finish(snap, status, checks, outcome, entries, now)

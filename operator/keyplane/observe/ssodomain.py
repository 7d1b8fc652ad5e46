"""Observe an SSODomain: look up the DNS TXT challenge of every domain not yet verified."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from ..api.ssodomain import SSODomainSpec
from ..policy.verification import still_verified
from ..reconcile.model import Snapshot
from ..reconcile.ssodomain import CHALLENGE_PREFIX, DnsObservation, challenge_value
from ..sources.dns import DnsLookupError, TxtResolver

log = logging.getLogger(__name__)


def verified_in_status(snap: Snapshot) -> frozenset[str]:
    """Domains the status already shows verified: a restart does not make users re-publish records."""
    domains = {d for d in snap.spec.get("domains") or [] if isinstance(d, str)}
    return frozenset(
        str(d.get("name")) for d in snap.status.get("domains") or []
        if isinstance(d, dict) and d.get("verified") and d.get("name") in domains
    )


async def observe_sso_domain(
    snap: Snapshot, resolver: TxtResolver, previous: DnsObservation | None
) -> DnsObservation:
    """Check each unverified domain once. Verification sticks: removing the record later is not a revocation."""
    try:
        spec = SSODomainSpec.model_validate(snap.spec)
    except ValidationError:
        return DnsObservation()  # the reconcile reports the invalid spec
    if spec.verification.method != "DNS":
        return DnsObservation()
    domains = list(spec.domains)
    verified = set(still_verified(domains, previous.verified if previous else (), verified_in_status(snap)))
    errors = []
    for domain in domains:
        if domain in verified:
            continue
        expected = challenge_value(snap.uid, snap.namespace, snap.name, domain)
        try:
            records = await resolver.txt(CHALLENGE_PREFIX + domain)
        except DnsLookupError as exc:
            errors.append(f"{domain}: {exc}")
            continue
        if expected in (r.strip() for r in records):
            verified.add(domain)
        else:
            errors.append(f"{domain}: TXT record {CHALLENGE_PREFIX}{domain} not found or has another value")
    return DnsObservation(frozenset(verified), "; ".join(errors) or None)

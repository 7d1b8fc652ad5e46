"""Which SSODomain owns a domain: the oldest claim wins, and subdomains cannot escape their parent.

Two claims in the same claim scope (a namespace, or the whole cluster) conflict when

* they name the same domain (whatever their IdPs), or
* one names a subdomain of the other's domain (on label boundaries) and their IdPs differ: a newer
  ``eu.acme.com`` of another IdP would escape ``acme.com``'s ``Required``, and a newer ``acme.com``
  would take over the users of an existing ``eu.acme.com``.

The same IdP may refine its own subdomains (``eu.acme.com`` Optional under ``acme.com`` Required).
Of two conflicting claims the older one (creation time, then namespace/name) wins; the newer one
gets ``DomainClaimed`` naming the owner. A claim's own domains never conflict with each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .domains import is_within


@dataclass(frozen=True, order=True)
class Claim:
    """One SSODomain's claim; ordering puts the oldest (then by namespace and name) first."""

    created: str
    namespace: str
    name: str
    uid: str = field(compare=False, default="")
    identity_provider: str = field(compare=False, default="")

    @property
    def owner_label(self) -> str:
        return f"{self.namespace}/{self.name}"

    def same_object(self, other: Claim) -> bool:
        return (self.namespace, self.name) == (other.namespace, other.name)


def conflicts(domain: str, claim: Claim, other_domain: str, other: Claim) -> bool:
    """Do these two (domain, claim) pairs contradict each other?"""
    if claim.same_object(other):
        return False
    if domain == other_domain:
        return True
    overlapping = is_within(domain, other_domain) or is_within(other_domain, domain)
    return overlapping and claim.identity_provider != other.identity_provider


@dataclass(frozen=True)
class ClaimDecision:
    """Whether a claim owns a domain; when not, the older claim (and its domain) that does."""

    domain: str
    owner: Claim | None = None
    owner_domain: str | None = None

    @property
    def owned(self) -> bool:
        return self.owner is None

    def reason(self, owner_name: str) -> str:
        if self.owner_domain == self.domain:
            return f"{self.domain} (owned by {owner_name})"
        return f"{self.domain} (overlaps {self.owner_domain}, owned by {owner_name} for another IdP)"


def decide_claim(domain: str, claim: Claim, others: Iterable[tuple[str, Claim]]) -> ClaimDecision:
    """Does ``claim`` own ``domain``, given every (domain, claim) pair of its scope?"""
    older = [(d, c) for d, c in others if c < claim and conflicts(domain, claim, d, c)]
    if not older:
        return ClaimDecision(domain)
    owner_domain, owner = min(older, key=lambda pair: (pair[1], pair[0]))
    return ClaimDecision(domain, owner, owner_domain)

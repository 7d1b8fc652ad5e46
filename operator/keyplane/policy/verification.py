"""DNS verification of SSODomain domains: which domains count as verified.

Verification sticks: a domain verified once (by this process, or as recorded in the object's status)
stays verified while it is listed, even if its TXT record is removed later; removing the record is not
a revocation, and a restart must not make users re-publish records. A domain dropped from the spec
loses it (re-adding it asks for the record again).
"""

from __future__ import annotations

from collections.abc import Iterable


def still_verified(listed: Iterable[str], *previously: Iterable[str]) -> frozenset[str]:
    """The listed domains that some earlier observation (or the status) already verified."""
    known: set[str] = set().union(*previously)
    return frozenset(d for d in listed if d in known)


def is_verified(domain: str, method: str, verified: Iterable[str]) -> bool:
    """With ``verification.method: None`` every domain counts as verified (the declaration is trusted)."""
    return method == "None" or domain in set(verified)

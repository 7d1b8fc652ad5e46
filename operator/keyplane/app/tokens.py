"""SCIM bearer tokens checked against the bundle's SHA-256 hashes, with rotation overlap."""

from __future__ import annotations

import datetime
import hmac
from collections.abc import Iterable

from keyplane.app.bundle import TokenHash
from keyplane.contract import token_hash_live, token_sha256

__all__ = ["parse_bearer", "token_sha256", "token_valid"]


def parse_bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def token_valid(token: str | None, hashes: Iterable[TokenHash], now: datetime.datetime) -> bool:
    """Whether a token matches one of the hashes that is still valid at ``now``.

    Every hash is compared (constant-time, no early exit), so timing does not reveal which
    one matched. A hash whose ``notAfter`` has passed is the previous token after its overlap.
    """
    if not token:
        return False
    digest = token_sha256(token)
    matched = False
    for entry in hashes:
        equal = hmac.compare_digest(digest, entry.sha256)
        fresh = token_hash_live(entry.not_after, now)
        matched |= equal and fresh
    return matched

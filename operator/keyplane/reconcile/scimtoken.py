"""The SCIM bearer token's life cycle as pure decisions: issue, adopt, rotate, expire the previous one.

All token state lives in the one Secret (current token, its issue time, the previous token's hash and
when it stops working, the last rotation request handled), so each step is a single write: a restart
between any two steps finds either the old state or the new one, never half of each.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ..contract import parse_time_or_none, rfc3339, token_hash_live, token_sha256

ROTATE_ANNOTATION = "keyplane.dev/rotate-token"
HANDLED_ANNOTATION = "keyplane.dev/rotate-token-handled"
TOKEN_KEY = "token"


def new_token() -> str:
    """256 bits from the OS's CSPRNG, URL-safe so it pastes cleanly into any IdP form."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TokenSecret:
    """The decoded content of a token Secret."""

    token: str
    issued_at: datetime
    previous_sha256: str | None = None
    previous_expires_at: datetime | None = None
    handled_request: str | None = None

    def to_secret_fields(self) -> tuple[dict[str, str], dict[str, str]]:
        """(stringData, annotations) of the Secret."""
        data = {TOKEN_KEY: self.token, "issued-at": rfc3339(self.issued_at)}
        if self.previous_sha256 and self.previous_expires_at:
            data["previous-sha256"] = self.previous_sha256
            data["previous-expires-at"] = rfc3339(self.previous_expires_at)
        annotations = {HANDLED_ANNOTATION: self.handled_request} if self.handled_request is not None else {}
        return data, annotations

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any]) -> TokenSecret | None:
        """Parse a Secret object; None if it holds no usable token (then a new one is issued)."""
        data = {k: _b64(v) for k, v in (secret.get("data") or {}).items()}
        data.update({k: str(v) for k, v in (secret.get("stringData") or {}).items()})
        token = (data.get(TOKEN_KEY) or "").strip()
        if len(token) < 16:
            return None
        issued = parse_time_or_none(data.get("issued-at")) or parse_time_or_none(
            (secret.get("metadata") or {}).get("creationTimestamp")
        )
        annotations = (secret.get("metadata") or {}).get("annotations") or {}
        return cls(
            token=token,
            issued_at=issued or datetime.fromtimestamp(0).astimezone(),
            previous_sha256=data.get("previous-sha256") or None,
            previous_expires_at=parse_time_or_none(data.get("previous-expires-at")),
            handled_request=annotations.get(HANDLED_ANNOTATION),
        )

    def state(self) -> TokenState:
        return TokenState(token_sha256(self.token), self.issued_at, self.previous_sha256, self.previous_expires_at)


def _b64(value: Any) -> str:
    try:
        return base64.b64decode(str(value)).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


@dataclass(frozen=True)
class TokenState:
    """What status and the bundle need: hashes and times, never the token."""

    current_sha256: str
    issued_at: datetime
    previous_sha256: str | None
    previous_expires_at: datetime | None

    def token_hashes(self, now: datetime) -> list[dict[str, Any]]:
        hashes: list[dict[str, Any]] = [{"sha256": self.current_sha256, "notAfter": None}]
        if self.previous_sha256 and self.previous_expires_at and token_hash_live(self.previous_expires_at, now):
            hashes.append({"sha256": self.previous_sha256, "notAfter": rfc3339(self.previous_expires_at)})
        return hashes


@dataclass(frozen=True)
class TokenPlan:
    """What to write, if anything, and why (the reason becomes an Event)."""

    secret: TokenSecret
    write: bool
    reason: str | None = None
    message: str = ""


def plan_token(
    existing: TokenSecret | None,
    *,
    rotation_interval: timedelta,
    overlap: timedelta,
    rotate_request: str | None,
    now: datetime,
    reissue: bool = False,
    generate: Callable[[], str] = new_token,
) -> TokenPlan:
    """Decide the token Secret's next content.

    `reissue` says a token existed before (status says so) but its Secret is gone: issue anew, loudly.
    A rotation request is the value of the keyplane.dev/rotate-token annotation; any value not yet
    handled rotates once. The first issue records the current value as handled, so applying an object
    that already carries the annotation does not rotate its brand-new token.
    """
    if existing is None:
        secret = TokenSecret(generate(), now, handled_request=rotate_request)
        if reissue:
            return TokenPlan(secret, True, "TokenReissued",
                             "The token Secret was missing: a new token was issued; update it in the IdP.")
        return TokenPlan(secret, True, "TokenIssued", "A SCIM token was issued; paste it into the IdP.")

    current = existing
    expired = current.previous_expires_at is not None and not token_hash_live(current.previous_expires_at, now)
    if current.previous_sha256 and expired:
        current = replace(current, previous_sha256=None, previous_expires_at=None)
    requested = rotate_request is not None and rotate_request != existing.handled_request
    due = rotation_interval > timedelta(0) and now >= existing.issued_at + rotation_interval
    if requested or due:
        keep_previous = overlap > timedelta(0)
        rotated = TokenSecret(
            token=generate(),
            issued_at=now,
            previous_sha256=token_sha256(existing.token) if keep_previous else None,
            previous_expires_at=now + overlap if keep_previous else None,
            handled_request=rotate_request if rotate_request is not None else existing.handled_request,
        )
        why = "on request (keyplane.dev/rotate-token)" if requested else "on schedule"
        until = f"; the previous token works until {rfc3339(now + overlap)}" if keep_previous else ""
        return TokenPlan(rotated, True, "TokenRotated", f"The SCIM token was rotated {why}{until}.")
    return TokenPlan(current, current != existing)

"""Login routing: email -> domain -> IdentityProvider, and whether local (password) login is allowed.

The decisions are :mod:`keyplane.policy.access`'s; this module applies them to the current bundle.
"""

from __future__ import annotations

from dataclasses import dataclass

from keyplane.app.bundle import Bundle, BundleStore
from keyplane.policy import access
from keyplane.policy.enforcement import Enforcement


@dataclass(frozen=True)
class LoginRoute:
    """Where an email logs in.

    ``email`` is the canonical address (None when the input has no canonical form: such an address
    is routed nowhere and ``local_login_allowed`` is False). ``identity_provider`` is None when no
    domain claims the email. ``local_login_allowed`` is False when the domain's enforcement is
    Required and the user is not a break-glass user. ``login_path`` is the path that starts the SSO
    login (relative to where Keyplane is mounted). ``reason`` says why local login is (not) allowed.
    """

    email: str | None
    domain: str | None
    identity_provider: str | None
    protocol: str | None
    sso_required: bool
    local_login_allowed: bool
    break_glass: bool
    login_path: str | None
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "email": self.email,
            "domain": self.domain,
            "identityProvider": self.identity_provider,
            "protocol": self.protocol,
            "ssoRequired": self.sso_required,
            "localLoginAllowed": self.local_login_allowed,
            "breakGlass": self.break_glass,
            "loginPath": self.login_path,
            "reason": self.reason,
        }


class LoginRouter:
    """Routes emails with the current bundle of a store (or a fixed bundle)."""

    def __init__(self, bundles: BundleStore | Bundle) -> None:
        self._store = bundles if isinstance(bundles, BundleStore) else BundleStore.from_bundle(bundles)

    def route(self, email: str) -> LoginRoute:
        bundle = self._store.bundle
        where = access.route(bundle.domains, email)
        local = access.local_login_allowed(bundle.domains, email)
        if where.rule is None:
            return LoginRoute(where.email, where.domain, None, None, False, local.allowed, False, None, local.reason)
        idp = bundle.identity_providers.get(where.rule.identity_provider)
        protocol = idp.protocol if idp else None
        path = f"/sso/{protocol.lower()}/{idp.name}/login" if idp and protocol else None
        return LoginRoute(
            email=where.email,
            domain=where.claimed,
            identity_provider=where.rule.identity_provider,
            protocol=protocol,
            sso_required=where.rule.enforcement == Enforcement.REQUIRED,
            local_login_allowed=local.allowed,
            break_glass=where.break_glass,
            login_path=path,
            reason=local.reason,
        )

    def local_login_allowed(self, email: str) -> bool:
        """Call this from the app's own password login before checking the password (fails closed)."""
        return access.local_login_allowed(self._store.bundle.domains, email).allowed

"""Login routing: email -> domain -> IdentityProvider, and whether local (password) login is allowed."""

from __future__ import annotations

from dataclasses import dataclass

from keyplane.app.bundle import Bundle, BundleStore

REQUIRED = "Required"


@dataclass(frozen=True)
class LoginRoute:
    """Where an email logs in.

    ``identity_provider`` is None when no domain claims the email. ``local_login_allowed`` is
    False when the domain's enforcement is Required and the user is not a break-glass user.
    ``login_path`` is the path that starts the SSO login (relative to where Keyplane is mounted).
    """

    email: str
    domain: str | None
    identity_provider: str | None
    protocol: str | None
    sso_required: bool
    local_login_allowed: bool
    break_glass: bool
    login_path: str | None

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
        }


def normalize_email(email: str) -> str:
    return email.strip().lower()


def domain_of(email: str) -> str | None:
    local, sep, domain = normalize_email(email).rpartition("@")
    if not sep or not local or not domain:
        return None
    return domain


class LoginRouter:
    """Routes emails with the current bundle of a store (or a fixed bundle)."""

    def __init__(self, bundles: BundleStore | Bundle) -> None:
        self._store = bundles if isinstance(bundles, BundleStore) else BundleStore.from_bundle(bundles)

    def _find_domain(self, bundle: Bundle, domain: str) -> str | None:
        """The most specific claimed domain: an exact match, else the closest parent domain."""
        candidate = domain
        while candidate:
            if candidate in bundle.domains:
                return candidate
            _, _, candidate = candidate.partition(".")
            if "." not in candidate:
                break
        return None

    def route(self, email: str) -> LoginRoute:
        bundle = self._store.bundle
        address = normalize_email(email)
        domain = domain_of(address)
        claimed = self._find_domain(bundle, domain) if domain else None
        if claimed is None:
            return LoginRoute(address, domain, None, None, False, True, False, None)
        spec = bundle.domains[claimed]
        idp = bundle.identity_providers.get(spec.identity_provider)
        required = spec.enforcement == REQUIRED
        break_glass = address in spec.break_glass_users
        protocol = idp.protocol if idp else None
        path = f"/sso/{protocol.lower()}/{idp.name}/login" if idp and protocol else None
        return LoginRoute(
            email=address,
            domain=claimed,
            identity_provider=spec.identity_provider,
            protocol=protocol,
            sso_required=required,
            local_login_allowed=(not required) or break_glass,
            break_glass=break_glass,
            login_path=path,
        )

    def local_login_allowed(self, email: str) -> bool:
        """Call this from the app's own password login before checking the password."""
        return self.route(email).local_login_allowed

"""Who may log in, be provisioned, or use local (password) login: the invariant, in one place.

The invariant: a login, or a SCIM write of an address, is accepted only when the address's canonical
domain routes, through the bundle's domain table (subdomains inherit their closest claimed parent),
to the identity provider that authenticated it. Break-glass addresses are kept by hand: no SCIM
connection may write them. Addresses without a canonical form are refused everywhere, and local login
fails closed on them (a ``Required`` domain cannot be escaped by spelling it oddly).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .domains import most_specific
from .email import InvalidEmail, canonical_email, domain_of, try_canonical_email
from .enforcement import Enforcement


class DomainRule(Protocol):
    """One entry of the bundle's domain table (``keyplane.app.bundle.Domain`` is one)."""

    @property
    def identity_provider(self) -> str: ...
    @property
    def enforcement(self) -> Enforcement: ...
    @property
    def break_glass_users(self) -> frozenset[str]: ...


DomainTable = Mapping[str, DomainRule]


@dataclass(frozen=True)
class Route:
    """Where an address logs in. ``email`` is None when the address has no canonical form."""

    email: str | None
    domain: str | None  # the address's own domain
    claimed: str | None  # the claimed domain it falls under
    rule: DomainRule | None
    problem: str | None = None  # why there is no canonical form

    @property
    def identity_provider(self) -> str | None:
        return self.rule.identity_provider if self.rule is not None else None

    @property
    def break_glass(self) -> bool:
        return self.rule is not None and self.email in self.rule.break_glass_users


@dataclass(frozen=True)
class Decision:
    """Yes or no, why, and the canonical address the decision is about (None when it has none)."""

    allowed: bool
    reason: str
    email: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


def route(domains: DomainTable, raw_email: object) -> Route:
    """The canonical address and the claimed domain (with its rule) it falls under."""
    try:
        email = canonical_email(raw_email)
    except InvalidEmail as exc:
        return Route(None, None, None, None, str(exc))
    domain = domain_of(email)
    claimed = most_specific(domain, domains)
    return Route(email, domain, claimed, domains[claimed] if claimed is not None else None)


def may_login(domains: DomainTable, identity_provider: str, raw_email: object) -> Decision:
    """May ``identity_provider`` log in the address it asserted?"""
    where = route(domains, raw_email)
    if where.email is None:
        return Decision(False, f"the email address is not valid: {where.problem}")
    if where.rule is None:
        return Decision(False, f"no SSODomain claims {where.domain}", where.email)
    if where.rule.identity_provider != identity_provider:
        return Decision(
            False, f"{where.domain} belongs to identity provider {where.rule.identity_provider}", where.email
        )
    return Decision(True, f"{where.claimed} logs in through {identity_provider}", where.email)


def may_provision(domains: DomainTable, identity_provider: str | None, raw_email: object) -> Decision:
    """May a SCIM connection of ``identity_provider`` (None: a connection without one) write the address?

    A connection without an identity provider may write only addresses of domains no SSODomain
    claims: a claimed domain's users belong to its IdP, and no IdP may reach them through it.
    """
    where = route(domains, raw_email)
    if where.email is None:
        return Decision(False, f"the email address is not valid: {where.problem}")
    if where.rule is not None and where.break_glass:
        return Decision(
            False,
            f"{where.email} is a break-glass user of {where.claimed}: it is kept by hand, not provisioned by SCIM",
            where.email,
        )
    if identity_provider is None:
        if where.rule is None:
            return Decision(True, f"no SSODomain claims {where.domain}", where.email)
        return Decision(
            False,
            f"{where.domain} belongs to identity provider {where.rule.identity_provider}; this SCIM connection "
            "has no identityProviderRef",
            where.email,
        )
    if where.rule is None:
        reason = f"no SSODomain of identity provider {identity_provider} claims {where.domain}"
        return Decision(False, reason, where.email)
    if where.rule.identity_provider != identity_provider:
        return Decision(
            False,
            f"{where.domain} belongs to identity provider {where.rule.identity_provider}, not {identity_provider}",
            where.email,
        )
    return Decision(True, f"{where.claimed} belongs to {identity_provider}", where.email)


def local_login_allowed(domains: DomainTable, raw_email: object) -> Decision:
    """May the address use the app's own (password) login? Call before checking the password."""
    where = route(domains, raw_email)
    if where.email is None:
        return Decision(False, f"the email address is not valid: {where.problem}")
    if where.rule is None:
        return Decision(True, f"no SSODomain claims {where.domain}", where.email)
    if where.break_glass:
        return Decision(True, f"{where.email} is a break-glass user of {where.claimed}", where.email)
    if where.rule.enforcement == Enforcement.OPTIONAL:
        return Decision(True, f"SSO is optional for {where.claimed}", where.email)
    return Decision(False, f"{where.claimed} must log in through {where.rule.identity_provider}", where.email)


def may_provision_user(
    domains: DomainTable,
    identity_provider: str | None,
    user_name: object,
    emails: list[object],
    *,
    keyed_on_user_name: bool,
) -> Decision:
    """May a SCIM connection write a User with this ``userName`` and these ``emails`` values?

    Every email value is checked, and the ``userName`` too when the connection logs users in by it
    or when it looks like an address (contains ``@``): whichever of them the app keys on, it is one
    the connection's IdP owns. The first refusal is returned, prefixed with the attribute.
    """
    addresses: list[tuple[str, object]] = [("emails", value) for value in emails]
    if keyed_on_user_name or (isinstance(user_name, str) and "@" in user_name):
        addresses.insert(0, ("userName", user_name))
    for attribute, value in addresses:
        decision = may_provision(domains, identity_provider, value)
        if not decision.allowed:
            return Decision(False, f"{attribute}: {decision.reason}", decision.email)
    return Decision(True, "every address belongs to the connection's identity provider")


def may_act_for_user(
    domains: DomainTable,
    identity_provider: str | None,
    user_name: object,
    emails: list[object],
    *,
    keyed_on_user_name: bool,
) -> Decision:
    """May a connection of ``identity_provider`` still act for a User it stored earlier?

    Acting is logging the user in, reporting a change of them to the app, or adding them to a group.
    The rule is the one for writing them (:func:`may_provision_user`), re-checked against the *current*
    domain table: a domain handed to another IdP, or an address made break-glass, after the user was
    stored is no longer the old IdP's to act for. (Deprovisioning such a user stays possible in the
    connection's own partition; it is only not reported to the app.)
    """
    return may_provision_user(domains, identity_provider, user_name, emails, keyed_on_user_name=keyed_on_user_name)


def break_glass_of(domain: str, users: Iterable[str]) -> list[str]:
    """The canonical break-glass addresses of exactly ``domain`` (not of its subdomains), sorted.

    An SSODomain's ``breakGlassUsers`` are split over its domains by each address's own domain:
    ``root@eu.acme.com`` belongs to ``eu.acme.com``'s entry, never to ``acme.com``'s.
    """
    canonical = (try_canonical_email(user) for user in users)
    return sorted({c for c in canonical if c is not None and domain_of(c) == domain})

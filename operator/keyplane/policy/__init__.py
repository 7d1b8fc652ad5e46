"""Who may: the rules Keyplane exists to enforce, in one folder, shared by the operator and ``keyplane.app``.

Pure functions over input values (no Kopf, no I/O, no clock reads), in the style of cert-manager's
``certificates/policies``: each returns a decision and the reason for it.

* :mod:`.email` — the one canonical form of an email address (and refusing the ones that have none);
* :mod:`.domains` — canonical domain names, label-boundary subdomain matching, public suffixes;
* :mod:`.enforcement` — ``Required`` / ``Optional``, parsed fail-closed;
* :mod:`.access` — :func:`may_login`, :func:`may_provision`, :func:`may_act_for_user`, :func:`local_login_allowed`;
* :mod:`.claims` — which SSODomain owns a domain (oldest claim wins, subdomains across IdPs conflict);
* :mod:`.verification` — a verified domain stays verified;
* :mod:`.fetch` — which network addresses a metadata or discovery URL may reach.
"""

from .access import (
    Decision,
    DomainRule,
    Route,
    local_login_allowed,
    may_act_for_user,
    may_login,
    may_provision,
    may_provision_user,
    route,
)
from .domains import InvalidDomain, canonical_domain, claimable_problem, is_public_suffix, is_within, most_specific
from .email import InvalidEmail, canonical_email, domain_of, try_canonical_email
from .enforcement import Enforcement, parse_enforcement

__all__ = [
    "Decision",
    "DomainRule",
    "Enforcement",
    "InvalidDomain",
    "InvalidEmail",
    "Route",
    "canonical_domain",
    "canonical_email",
    "claimable_problem",
    "domain_of",
    "is_public_suffix",
    "is_within",
    "local_login_allowed",
    "may_act_for_user",
    "may_login",
    "may_provision",
    "may_provision_user",
    "most_specific",
    "parse_enforcement",
    "route",
    "try_canonical_email",
]

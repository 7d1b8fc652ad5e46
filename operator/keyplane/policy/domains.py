"""Domain names: their canonical form, subdomain matching on label boundaries, public suffixes.

A domain is canonical when it is lower case, in IDNA A-label form (``xn--…``) and has no trailing
dot: the form SSODomain ``spec.domains`` requires and the bundle's domain table is keyed by.
``eu.acme.com`` is within ``acme.com``; ``evilacme.com`` is not (a string-suffix match would say it is).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from publicsuffixlist import PublicSuffixList

from .email import InvalidEmail, canonical_email, domain_of


class InvalidDomain(ValueError):
    """The name is not a domain that can be claimed; ``str()`` says why."""


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    # The list ships inside the publicsuffixlist wheel (pinned in constraints.txt): no network.
    # Its rules as published, IDN suffixes as Unicode labels; domains are looked up in that form
    # (_unicode_form). Having publicsuffixlist IDNA-encode each of its ~10 000 rules instead cost ~40 ms
    # at every start: a tenth of `keyplane render`'s reconcile for 1000 objects.
    return PublicSuffixList(accept_encoded_idn=False)


def _unicode_form(domain: str) -> str:
    """A canonical domain with its A-labels (``xn--…``) decoded, as the Public Suffix List writes them."""
    return ".".join(_u_label(label) for label in domain.split("."))


def _u_label(label: str) -> str:
    if not label.startswith("xn--"):
        return label
    try:
        return label[4:].encode("ascii").decode("punycode")
    except UnicodeError:  # not punycode: a label no rule has
        return label


def canonical_domain(raw: object) -> str:
    """The canonical form of a domain name, by the same rules as an address's domain."""
    if not isinstance(raw, str) or not raw or "@" in raw:
        raise InvalidDomain(f"{raw!r} is not a domain name")
    try:
        return domain_of(canonical_email(f"postmaster@{raw}"))
    except InvalidEmail as exc:
        raise InvalidDomain(f"{raw!r} is not a usable email domain: {exc}") from exc


def is_public_suffix(domain: str) -> bool:
    """``com``, ``co.uk``, ``github.io``…: names under which anyone can register their own domain."""
    return bool(_public_suffixes().is_public(_unicode_form(domain)))


def claimable_problem(raw: str) -> str | None:
    """Why an SSODomain cannot claim ``raw``, or None when it can."""
    try:
        domain = canonical_domain(raw)
    except InvalidDomain as exc:
        return str(exc)
    if domain != raw:
        return f"{raw!r} is not in canonical form (write {domain!r})"
    if is_public_suffix(domain):
        return (
            f"{domain} is a public suffix (Public Suffix List): anyone can register domains under it, "
            "so no one can claim it; claim your registered domain instead"
        )
    return None


def is_within(domain: str, parent: str) -> bool:
    """True when ``domain`` is ``parent`` or one of its subdomains (whole labels only)."""
    return domain == parent or domain.endswith("." + parent)


def parents(domain: str) -> list[str]:
    """``domain`` and each parent of it, most specific first: ``a.b.c`` → ``a.b.c``, ``b.c``, ``c``."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def most_specific(domain: str, claimed: Iterable[str]) -> str | None:
    """The claimed domain an address domain falls under: the longest claimed one it is within."""
    table = set(claimed)
    return next((candidate for candidate in parents(domain) if candidate in table), None)

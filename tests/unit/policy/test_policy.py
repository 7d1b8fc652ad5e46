"""keyplane.policy, function by function: each rule with the input that breaks it (also what
``make mutation`` runs against the mutants of ``operator/keyplane/policy/``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import publicsuffixlist
import pytest

from keyplane.policy import (
    Decision,
    Enforcement,
    InvalidDomain,
    InvalidEmail,
    canonical_domain,
    canonical_email,
    claimable_problem,
    domain_of,
    is_public_suffix,
    is_within,
    local_login_allowed,
    may_login,
    may_provision,
    most_specific,
    parse_enforcement,
    route,
    try_canonical_email,
)
from keyplane.policy.access import break_glass_of, may_provision_user
from keyplane.policy.claims import Claim, ClaimDecision, conflicts, decide_claim
from keyplane.policy.domains import parents
from keyplane.policy.email import MAX_LENGTH, mixed_script_label
from keyplane.policy.fetch import forbidden_address_class
from keyplane.policy.verification import is_verified, still_verified

# -- email ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("alice@acme.com", "alice@acme.com"),
        ("Alice@ACME.com", "alice@acme.com"),
        ("ALICE@ACME.COM.", "alice@acme.com"),  # one trailing dot is dropped
        ("alice@BÜCHER.de", "alice@xn--bcher-kva.de"),  # IDNA: A-label form
        ("alice@xn--bcher-kva.de", "alice@xn--bcher-kva.de"),
        ("alice@\uff41\uff43\uff4d\uff45.com", "alice@acme.com"),  # fullwidth domain (UTS 46 mapping)
        ("\uff41lice@acme.com", "alice@acme.com"),  # fullwidth local part (NFKC)
        ("j.doe+sso@eu.acme.com", "j.doe+sso@eu.acme.com"),
        ("alice@\u043f\u0440\u0438\u043c\u0435\u0440.com", "alice@xn--e1afmkfd.com"),  # one script per label
        ("alice@\u30c6\u30b9\u30c8\u6f22\u5b57.jp", "alice@xn--zckzah4964b3xu.jp"),  # Katakana + Han: one label
    ],
)
def test_canonical_email(raw: str, canonical: str) -> None:
    assert canonical_email(raw) == canonical
    assert try_canonical_email(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (None, "no email address"),
        ("", "no email address"),
        (42, "no email address"),
        ("alice@@acme.com", "invalid characters"),
        ("alice@evil.io@acme.com", "invalid characters"),
        ("alice\u200b@acme.com", "U+200B"),  # zero-width space
        ("alice@acme.com\u200b", "U+200B"),
        ("alice\u2060@acme.com", "U+2060"),  # word joiner (Cf)
        ("alice\u3164@acme.com", "U+3164"),  # Hangul filler (a letter that renders as nothing)
        ("alice\u034f@acme.com", "U+034F"),  # combining grapheme joiner
        ("alice@ac\u00adme.com", "U+00AD"),  # soft hyphen
        (" alice@acme.com", "U+0020"),
        ("alice@acme.com\n", "U+000A"),
        ("alice@\u0430cme.com", "mixes scripts"),  # Cyrillic a in a Latin label
        ("alice@acme.com..", "period"),  # only one trailing dot is dropped
        ("@acme.com", "before the @"),
        ("alice@", "after the @"),
        ("alice@localhost", "period"),
        ("a" * 320 + "@acme.com", "longer than 320"),
    ],
)
def test_addresses_without_a_canonical_form(raw: object, why: str) -> None:
    with pytest.raises(InvalidEmail, match=re.escape(why)):
        canonical_email(raw)
    assert try_canonical_email(raw) is None


def test_own_refusal_messages() -> None:
    def why(raw: object) -> str:
        with pytest.raises(InvalidEmail) as caught:
            canonical_email(raw)
        return str(caught.value)

    assert MAX_LENGTH == 320
    assert why("a@" + "b" * 319) == "longer than 320 characters"
    assert "longer than" not in why("a" * 64 + "@" + "b" * 251 + ".com")  # exactly 320: email-validator's limit
    assert why(None) == why("") == "no email address"
    assert why("alice@acme.com\n") == "contains the invisible character U+000A UNNAMED"
    assert why("al\u200bice@acme.com") == "contains the invisible character U+200B ZERO WIDTH SPACE"
    assert why("alice@\u0430cme.com") == (
        "the domain label '\u0430cme' mixes scripts (a look-alike of another domain)"
    )
    # A compatibility character that NFKC turns into "@" (fullwidth or small commercial at).
    for at in ("\uff20", "\ufe6b"):
        assert why(f"alice{at}evil.io@acme.com") == "the local part is not a plain address after normalisation"


def test_mixed_script_labels() -> None:
    assert mixed_script_label("acme.com") is None
    assert mixed_script_label("\u0430cme.com") == "\u0430cme"
    assert mixed_script_label("acme.\u0441om") == "\u0441om"  # the second label
    assert mixed_script_label("\u0430\u0441.com") is None  # all Cyrillic
    assert mixed_script_label("\u30c6\u30b9\u30c8\u6f22\u5b57abc.jp") is None  # Latin may join CJK
    assert mixed_script_label("ab1-2.com") is None  # digits and hyphens have no script
    assert mixed_script_label("\u0430b\u30c6.com") == "\u0430b\u30c6"
    assert mixed_script_label("\u05d0a.com") == "\u05d0a"  # Hebrew + Latin


def test_domain_of() -> None:
    assert domain_of("alice@acme.com") == "acme.com"
    assert domain_of("a@b@acme.com") == "acme.com"


# -- domains --------------------------------------------------------------------------


def test_canonical_domain() -> None:
    assert canonical_domain("ACME.com.") == "acme.com"
    assert canonical_domain("bücher.de") == "xn--bcher-kva.de"
    for bad in ("", None, "a@acme.com", "acme..com", "ac me.com", "localhost", "\u0430cme.com"):
        with pytest.raises(InvalidDomain):
            canonical_domain(bad)
    for not_a_name in ("", None, 42, "a@acme.com"):
        with pytest.raises(InvalidDomain) as caught:
            canonical_domain(not_a_name)
        assert str(caught.value) == f"{not_a_name!r} is not a domain name"


def test_public_suffixes() -> None:
    for suffix in ("com", "co.uk", "github.io", "s3.amazonaws.com", "xn--p1ai"):
        assert is_public_suffix(suffix), suffix
    for registered in ("acme.com", "acme.co.uk", "eu.acme.com", "me.github.io"):
        assert not is_public_suffix(registered), registered


def test_claimable_problem() -> None:
    assert claimable_problem("acme.com") is None
    assert claimable_problem("xn--bcher-kva.de") is None
    assert claimable_problem("co.uk") == (
        "co.uk is a public suffix (Public Suffix List): anyone can register domains under it, "
        "so no one can claim it; claim your registered domain instead"
    )
    assert "canonical form (write 'acme.com')" in str(claimable_problem("ACME.com"))
    assert "canonical form (write 'xn--bcher-kva.de')" in str(claimable_problem("bücher.de"))
    assert "not a usable email domain" in str(claimable_problem("acme..com"))


def test_is_within_matches_whole_labels_only() -> None:
    assert is_within("acme.com", "acme.com")
    assert is_within("eu.acme.com", "acme.com")
    assert is_within("a.eu.acme.com", "acme.com")
    assert not is_within("evilacme.com", "acme.com")
    assert not is_within("acme.com", "eu.acme.com")
    assert not is_within("acme.com.evil.io", "acme.com")


def test_parents_and_most_specific() -> None:
    assert parents("a.b.c") == ["a.b.c", "b.c", "c"]
    table = {"acme.com", "eu.acme.com"}
    assert most_specific("acme.com", table) == "acme.com"
    assert most_specific("x.acme.com", table) == "acme.com"
    assert most_specific("eu.acme.com", table) == "eu.acme.com"
    assert most_specific("dev.eu.acme.com", table) == "eu.acme.com"
    assert most_specific("evilacme.com", table) is None
    assert most_specific("com", table) is None


# -- enforcement ----------------------------------------------------------------------


def test_enforcement_parses_fail_closed() -> None:
    assert parse_enforcement("Required") is Enforcement.REQUIRED
    assert parse_enforcement("Optional") is Enforcement.OPTIONAL
    with pytest.raises(ValueError) as missing:
        parse_enforcement(None)
    assert str(missing.value) == "enforcement is missing (it must be 'Required' or 'Optional')"
    for bad in ("", "required", "OPTIONAL", "Enforced", True, 1):
        with pytest.raises(ValueError, match="unknown enforcement"):
            parse_enforcement(bad)


# -- access ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    identity_provider: str
    enforcement: Enforcement
    break_glass_users: frozenset[str] = frozenset()


TABLE = {
    "acme.com": Rule("okta", Enforcement.REQUIRED, frozenset({"root@acme.com"})),
    "eu.acme.com": Rule("okta", Enforcement.OPTIONAL),
    "contoso.com": Rule("entra", Enforcement.OPTIONAL, frozenset({"admin@contoso.com"})),
}


def test_route() -> None:
    where = route(TABLE, "Bob@Dev.EU.acme.com")
    assert (where.email, where.domain, where.claimed) == ("bob@dev.eu.acme.com", "dev.eu.acme.com", "eu.acme.com")
    assert where.identity_provider == "okta" and not where.break_glass
    assert route(TABLE, "root@acme.com").break_glass
    assert not route(TABLE, "root@eu.acme.com").break_glass  # break-glass is one exact address
    nowhere = route(TABLE, "x@gmail.com")
    assert nowhere.rule is None and nowhere.identity_provider is None and not nowhere.break_glass
    bad = route(TABLE, "x@@acme.com")
    assert bad.email is None and bad.problem and bad.rule is None and not bad.break_glass


def test_may_login() -> None:
    ok = may_login(TABLE, "okta", "Alice@ACME.com.")
    assert ok and ok.allowed and ok.email == "alice@acme.com" and "acme.com logs in through okta" in ok.reason
    assert may_login(TABLE, "okta", "root@acme.com")  # break-glass users may use SSO too
    assert may_login(TABLE, "okta", "a@x.eu.acme.com").allowed
    other = may_login(TABLE, "entra", "alice@acme.com")
    assert not other and other.email == "alice@acme.com"
    assert other.reason == "acme.com belongs to identity provider okta"
    unclaimed = may_login(TABLE, "okta", "alice@evilacme.com")
    assert not unclaimed.allowed and unclaimed.reason == "no SSODomain claims evilacme.com"
    assert unclaimed.allowed is False and unclaimed.email == "alice@evilacme.com"
    assert other.allowed is False
    bad = may_login(TABLE, "okta", "alice\u200b@acme.com")
    assert bad.allowed is False and bad.email is None
    assert bad.reason == "the email address is not valid: contains the invisible character U+200B ZERO WIDTH SPACE"


def test_may_provision() -> None:
    own = may_provision(TABLE, "okta", "Bob@acme.com")
    assert own.allowed is True and own.reason == "acme.com belongs to okta" and own.email == "bob@acme.com"
    assert may_provision(TABLE, "okta", "bob@x.eu.acme.com").reason == "eu.acme.com belongs to okta"
    foreign = may_provision(TABLE, "entra", "bob@acme.com")
    assert foreign.allowed is False and foreign.reason == "acme.com belongs to identity provider okta, not entra"
    assert foreign.email == "bob@acme.com"
    glass = may_provision(TABLE, "okta", "ROOT@acme.com")
    assert glass.allowed is False and glass.email == "root@acme.com"
    assert glass.reason == (
        "root@acme.com is a break-glass user of acme.com: it is kept by hand, not provisioned by SCIM"
    )
    assert not may_provision(TABLE, None, "root@acme.com").allowed
    unclaimed = may_provision(TABLE, "okta", "bob@gmail.com")
    assert unclaimed.allowed is False and unclaimed.reason == "no SSODomain of identity provider okta claims gmail.com"
    assert unclaimed.email == "bob@gmail.com"
    # A connection without an IdP: only unclaimed domains.
    free = may_provision(TABLE, None, "bob@gmail.com")
    assert free.allowed and free.reason == "no SSODomain claims gmail.com" and free.email == "bob@gmail.com"
    claimed = may_provision(TABLE, None, "bob@acme.com")
    assert claimed.allowed is False and claimed.email == "bob@acme.com"
    assert claimed.reason == (
        "acme.com belongs to identity provider okta; this SCIM connection has no identityProviderRef"
    )
    bad = may_provision(TABLE, "okta", "bob@@acme.com")
    assert bad.allowed is False and bad.email is None
    assert bad.reason == "the email address is not valid: The part after the @-sign contains invalid characters: '@'."
    assert not may_provision(TABLE, None, "bob@@gmail.com").allowed


def test_may_provision_user() -> None:
    def check(user_name: object, emails: list[object], keyed: bool = False, idp: str | None = "okta") -> Decision:
        return may_provision_user(TABLE, idp, user_name, emails, keyed_on_user_name=keyed)

    fine = check("bob@acme.com", ["bob@acme.com", "b@eu.acme.com"])
    assert fine.allowed is True and fine.reason == "every address belongs to the connection's identity provider"
    assert check("bob", ["bob@acme.com"]).allowed  # a userName that is no address, on an email-keyed connection
    assert not check("bob", ["bob@acme.com"], keyed=True).allowed  # ... but the key must be an owned address
    assert check("bob", [], keyed=False).allowed
    refused = check("bob@contoso.com", ["bob@acme.com"])
    assert refused.allowed is False and refused.reason.startswith("userName: contoso.com belongs")
    both = check("bob@contoso.com", ["bob@gmail.com"])  # the userName is checked first
    assert both.reason == "userName: contoso.com belongs to identity provider entra, not okta"
    refused = check("bob@acme.com", ["bob@acme.com", "bob@contoso.com"])
    assert refused.reason.startswith("emails: contoso.com belongs") and refused.email == "bob@contoso.com"
    assert not check(None, [None]).allowed
    assert check("bob@gmail.com", ["bob@gmail.com"], idp=None).allowed


def test_local_login_allowed_fails_closed() -> None:
    required = local_login_allowed(TABLE, "Alice@acme.com")
    assert required.allowed is False and required.email == "alice@acme.com"
    assert required.reason == "acme.com must log in through okta"
    assert not local_login_allowed(TABLE, "alice@deep.acme.com").allowed  # subdomains inherit Required
    assert local_login_allowed(TABLE, "Root@ACME.com.").allowed  # break-glass, any spelling
    glass = local_login_allowed(TABLE, "ROOT@acme.com")
    assert glass.reason == "root@acme.com is a break-glass user of acme.com" and glass.email == "root@acme.com"
    optional = local_login_allowed(TABLE, "Bob@eu.acme.com")  # Optional refinement
    assert optional.allowed is True and optional.email == "bob@eu.acme.com"
    assert optional.reason == "SSO is optional for eu.acme.com"
    free = local_login_allowed(TABLE, "bob@gmail.com")
    assert free.allowed and free.reason == "no SSODomain claims gmail.com" and free.email == "bob@gmail.com"
    for odd in ("alice\u200b@acme.com", "alice@@acme.com", "alice@\u0430cme.com", "alice\u3164@acme.com", ""):
        decision = local_login_allowed(TABLE, odd)
        assert decision.allowed is False and decision.email is None, odd
        assert decision.reason.startswith("the email address is not valid: "), odd
    unknown = {"acme.com": Rule("okta", "Whatever")}  # type: ignore[arg-type]
    assert not local_login_allowed(unknown, "bob@acme.com").allowed  # an unknown enforcement is not Optional


def test_break_glass_of_splits_by_exact_domain() -> None:
    users = ["Root@ACME.com", "ops@eu.acme.com", "x@evilacme.com", "x@notacme.com", "bad@@acme.com", "root@acme.com"]
    assert break_glass_of("acme.com", users) == ["root@acme.com"]
    assert break_glass_of("eu.acme.com", users) == ["ops@eu.acme.com"]
    assert break_glass_of("notacme.com", users) == ["x@notacme.com"]
    assert break_glass_of("contoso.com", users) == []


# -- claims ---------------------------------------------------------------------------

OKTA_OLD = Claim("2026-01-01T00:00:00Z", "ns", "acme", "u1", "okta")
OKTA_NEW = Claim("2026-02-01T00:00:00Z", "ns", "acme-eu", "u2", "okta")
OTHER_NEW = Claim("2026-02-01T00:00:00Z", "ns", "contractors", "u3", "contractors")


def test_claim_order_and_labels() -> None:
    assert OKTA_OLD < OKTA_NEW < OTHER_NEW  # by time, then namespace/name ("acme-eu" < "contractors")
    assert OKTA_OLD.owner_label == "ns/acme"
    assert OKTA_OLD.same_object(Claim("2030-01-01T00:00:00Z", "ns", "acme"))
    assert not OKTA_OLD.same_object(Claim(OKTA_OLD.created, "other", "acme"))


def test_conflicts() -> None:
    assert conflicts("acme.com", OKTA_NEW, "acme.com", OKTA_OLD)  # a duplicate, whatever the IdP
    assert not conflicts("eu.acme.com", OKTA_NEW, "acme.com", OKTA_OLD)  # the same IdP refines
    assert conflicts("eu.acme.com", OTHER_NEW, "acme.com", OKTA_OLD)  # a subdomain, another IdP
    assert conflicts("acme.com", OTHER_NEW, "eu.acme.com", OKTA_OLD)  # a parent, another IdP
    assert not conflicts("evilacme.com", OTHER_NEW, "acme.com", OKTA_OLD)
    assert not conflicts("acme.com", OKTA_OLD, "acme.com", OKTA_OLD)  # its own claim
    assert not conflicts("acme.io", OTHER_NEW, "acme.com", OKTA_OLD)


def test_decide_claim() -> None:
    book = [("acme.com", OKTA_OLD), ("eu.acme.com", OTHER_NEW), ("eu.acme.com", OKTA_NEW)]
    lost = decide_claim("eu.acme.com", OTHER_NEW, book)
    assert not lost.owned and lost.owner == OKTA_OLD and lost.owner_domain == "acme.com"
    assert lost.reason("acme") == "eu.acme.com (overlaps acme.com, owned by acme for another IdP)"
    assert decide_claim("eu.acme.com", OKTA_NEW, book).owned  # okta refines its own domain; OTHER_NEW is newer
    assert decide_claim("acme.com", OKTA_OLD, book).owned  # the oldest wins
    duplicate = decide_claim("acme.com", OKTA_NEW, [("acme.com", OKTA_OLD), ("acme.com", OKTA_NEW)])
    assert duplicate.owner == OKTA_OLD and duplicate.reason("acme") == "acme.com (owned by acme)"
    # The oldest of several older conflicting claims is named.
    older = Claim("2025-01-01T00:00:00Z", "ns", "zzz", "u0", "google")
    oldest_wins = decide_claim("acme.com", OTHER_NEW, [*book, ("x.acme.com", older)])
    assert oldest_wins.owner == older and oldest_wins.owner_domain == "x.acme.com"
    # One owner claiming two overlapping domains: the alphabetically first of them is named.
    two = decide_claim("dev.eu.acme.com", OTHER_NEW, [("eu.acme.com", OKTA_OLD), ("acme.com", OKTA_OLD)])
    assert two.owner == OKTA_OLD and two.owner_domain == "acme.com"
    assert ClaimDecision("acme.com").owned


# -- verification ---------------------------------------------------------------------


def test_verification_sticks_while_listed() -> None:
    assert still_verified(["acme.com", "acme.io"], {"acme.com"}) == {"acme.com"}
    assert still_verified(["acme.com"], set(), {"acme.com"}) == {"acme.com"}  # from the status
    assert still_verified(["acme.io"], {"acme.com"}, {"acme.com"}) == set()  # dropped from the spec
    assert still_verified(["acme.com"]) == set()
    assert is_verified("acme.com", "None", [])
    assert is_verified("acme.com", "DNS", ["acme.com"])
    assert not is_verified("acme.com", "DNS", ["acme.io"])


# -- fetch ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "private_ok", "why"),
    [
        ("8.8.8.8", False, None),
        ("2606:4700::1111", False, None),
        ("127.0.0.1", False, "loopback"),
        ("127.0.0.1", True, None),
        ("::1", False, "loopback"),
        ("10.1.2.3", False, "private"),
        ("10.1.2.3", True, None),
        ("169.254.1.1", False, "link-local"),
        ("100.64.0.1", False, "carrier-grade NAT"),
        ("100.64.0.1", True, None),
        ("fec0::1", False, "site-local"),
        ("4000::1", False, "reserved"),
        ("240.0.0.1", False, "private"),
        ("192.0.2.1", False, "private"),
        ("0.0.0.0", True, "unspecified"),
        ("224.0.0.1", True, "multicast"),
        ("169.254.169.254", True, "cloud instance metadata"),
        ("fd00:ec2::254", True, "cloud instance metadata"),
        ("255.255.255.255", True, "broadcast"),
        ("::ffff:127.0.0.1", False, "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", True, "cloud instance metadata"),
        ("::ffff:8.8.8.8", False, None),
        ("2002:7f00:1::", False, "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", True, "cloud instance metadata"),  # NAT64 of 169.254.169.254
        ("64:ff9b::808:808", False, None),  # NAT64 of 8.8.8.8
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False, "private"),  # Teredo (non-global in itself)
        ("fe80::1%eth0", False, "link-local"),
        ("fd00:ec2::254%eth0", True, "cloud instance metadata"),  # the zone does not change the address
        ("::ffff:10.1.2.3", True, None),  # the setting applies to the embedded address too
        ("64:ff9b::a01:203", True, None),
        ("2001:0:a9fe:a9fe::", True, "cloud instance metadata"),  # Teredo whose server is the metadata IP
        ("idp.example.com", False, "not an IP address"),
        ("2001:db8::1", False, "private"),
    ],
)
def test_forbidden_address_class(address: str, private_ok: bool, why: str | None) -> None:
    assert forbidden_address_class(address, allow_private_networks=private_ok) == why


def test_private_networks_are_refused_by_default() -> None:
    assert forbidden_address_class("127.0.0.1") == "loopback"


def test_public_suffixes_of_idn_rules_are_found_from_their_canonical_a_label_form() -> None:
    """is_public_suffix looks A-label domains up in the list's Unicode form (publicsuffixlist with
    accept_encoded_idn=False, 5x faster to load): same answers as publicsuffixlist's own encoded lookup, for
    every internationalised rule of the list, the names under it and the labels around it."""
    encoded = publicsuffixlist.PublicSuffixList(accept_encoded_idn=True)
    lines = Path(publicsuffixlist.PSLFILE).read_text(encoding="utf-8").splitlines()
    rules = [line.split()[0].lstrip("!") for line in lines if line.strip() and not line.startswith("//")]
    idn_rules = [rule.replace("*", "wild") for rule in rules if not rule.isascii()]
    assert len(idn_rules) > 300
    checked = 0
    for rule in idn_rules:
        for name in (rule, f"acme.{rule}", f"a.b.{rule}", rule.split(".", 1)[-1]):
            try:
                domain = canonical_domain(name)
            except InvalidDomain:
                continue
            assert domain.isascii()
            assert is_public_suffix(domain) == bool(encoded.is_public(domain)), name
            checked += 1
    assert checked > 2 * len(idn_rules)
    assert is_public_suffix(canonical_domain("公司.cn")) and not is_public_suffix(canonical_domain("acme.公司.cn"))

"""SSODomain rules of issue 11/17 as the operator applies them: subdomain claims across IdPs, public
suffixes, break-glass users split by exact domain, verification that sticks."""

from __future__ import annotations

from typing import Any

import pytest
from keyplane_op_helpers import NOW, NS, cond, cstate, domain_snap, with_status

from keyplane.observe.ssodomain import observe_sso_domain
from keyplane.reconcile.model import Snapshot
from keyplane.reconcile.ssodomain import (
    CHALLENGE_PREFIX,
    DnsObservation,
    IdPState,
    build_claim_book,
    challenge_value,
    reconcile_sso_domain,
)

READY_IDP = IdPState(exists=True, ready=True, serving=True, reason="Ready")
OLD, NEW = "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z"


def reconcile(snap: Snapshot, others: list[Snapshot] = (), dns: DnsObservation | None = None) -> Any:  # type: ignore[assignment]
    book = build_claim_book([snap, *others], False)
    return reconcile_sso_domain(snap, book, READY_IDP, dns, cluster_scoped=False, now=NOW)


def test_subdomain_of_another_idps_domain_is_domain_claimed_naming_the_owner() -> None:
    """Today's escape: eu.acme.com claimed by another IdP as Optional with its own break-glass user."""
    acme = domain_snap("acme", ["acme.com"], idp="okta", created=OLD)
    escape = domain_snap(
        "eu", ["eu.acme.com"], idp="contractors", created=NEW,
        spec_extra={"enforcement": "Optional", "breakGlassUsers": ["me@eu.acme.com"]},
    )
    result = reconcile(escape, [acme])
    assert cstate(result.status, "Ready") == ("False", "DomainClaimed")
    message = cond(result.status, "Ready")["message"]
    assert "eu.acme.com (overlaps acme.com, owned by acme" in message
    assert result.status["domains"] == [{"name": "eu.acme.com", "verified": True, "claimedBy": "acme"}]
    assert result.entry == {}
    assert cstate(reconcile(acme, [escape]).status, "Ready") == ("True", "Ready")


def test_a_newer_parent_claim_of_another_idp_cannot_take_over_an_existing_subdomain() -> None:
    eu = domain_snap("eu", ["eu.acme.com"], idp="contractors", created=OLD)
    acme = domain_snap("acme", ["acme.com", "acme.io"], idp="okta", created=NEW)
    result = reconcile(acme, [eu])
    assert cstate(result.status, "Ready") == ("False", "DomainClaimed")
    assert "acme.com (overlaps eu.acme.com, owned by eu" in cond(result.status, "Ready")["message"]
    assert set(result.entry) == {"acme.io"}


def test_the_same_idp_may_refine_its_own_subdomains() -> None:
    acme = domain_snap("acme", ["acme.com"], idp="okta", created=OLD, spec_extra={"enforcement": "Required"})
    eu = domain_snap("eu", ["eu.acme.com"], idp="okta", created=NEW, spec_extra={"enforcement": "Optional"})
    result = reconcile(eu, [acme])
    assert cstate(result.status, "Ready") == ("True", "Ready")
    assert result.entry["eu.acme.com"]["enforcement"] == "Optional"


def test_look_alike_names_are_not_subdomains() -> None:
    """evilacme.com ends with acme.com as a string, not on a label boundary: no conflict."""
    acme = domain_snap("acme", ["acme.com"], idp="okta", created=OLD)
    evil = domain_snap("evil", ["evilacme.com"], idp="contractors", created=NEW)
    assert cstate(reconcile(evil, [acme]).status, "Ready") == ("True", "Ready")


def test_a_loser_does_not_count_its_losses_as_owned() -> None:
    acme = domain_snap("acme", ["acme.com"], idp="okta", created=OLD)
    copy = domain_snap("copy", ["acme.com"], idp="okta", created=NEW)
    result = reconcile(copy, [acme])
    assert cstate(result.status, "Ready") == ("False", "DomainClaimed")
    assert "acme.com (owned by acme)" in cond(result.status, "Ready")["message"]


@pytest.mark.parametrize("suffix", ["co.uk", "github.io", "s3.amazonaws.com"])  # "com" alone fails the CRD pattern
def test_public_suffixes_cannot_be_claimed(suffix: str) -> None:
    snap = domain_snap("greedy", [suffix], created=OLD)
    result = reconcile(snap)
    assert cstate(result.status, "Ready") == ("False", "InvalidDomain")
    message = cond(result.status, "Ready")["message"]
    assert f"{suffix} is a public suffix" in message and "spec.domains" in message
    assert result.entry == {}
    assert result.status["domains"] == [{"name": suffix, "verified": False}]
    # A refused claim blocks no one: a domain under it is claimed normally.
    below = domain_snap("acme", [f"acme.{suffix}"], idp="contractors", created=NEW)
    assert cstate(reconcile(below, [snap]).status, "Ready") == ("True", "Ready")


def test_a_public_suffix_added_to_a_working_ssodomain_does_not_drop_its_other_domains() -> None:
    """Bad input never costs a working config: acme.com stays Required in the bundle."""
    snap = domain_snap("acme", ["acme.com", "co.uk"], created=OLD, spec_extra={"enforcement": "Required"})
    result = reconcile(snap)
    assert cstate(result.status, "Ready") == ("False", "InvalidDomain")
    assert set(result.entry) == {"acme.com"} and result.entry["acme.com"]["enforcement"] == "Required"


def test_break_glass_users_go_to_their_exact_domain_canonical() -> None:
    snap = domain_snap(
        "acme", ["acme.com", "eu.acme.com", "notacme.com"], created=OLD,
        spec_extra={"breakGlassUsers": ["Root@ACME.com", "ops@EU.acme.com", "x@notacme.com"]},
    )
    entry = reconcile(snap).entry
    assert entry["acme.com"]["breakGlassUsers"] == ["root@acme.com"]
    assert entry["eu.acme.com"]["breakGlassUsers"] == ["ops@eu.acme.com"]
    assert entry["notacme.com"]["breakGlassUsers"] == ["x@notacme.com"]


class Txt:
    """A hand-written TxtResolver: which records exist is the test's choice (the real resolver is
    tested against a real DNS server in tests/unit/sources/test_sources_dns.py)."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records

    async def txt(self, name: str) -> list[str]:
        return self.records.get(name, [])


async def test_a_verified_domain_stays_verified() -> None:
    snap = domain_snap(
        "acme", ["acme.com", "acme.io"], created=OLD, uid="u-1", spec_extra={"verification": {"method": "DNS"}}
    )
    record = challenge_value("u-1", NS, "acme", "acme.com")
    first = await observe_sso_domain(snap, Txt({CHALLENGE_PREFIX + "acme.com": [record]}), None)
    assert first.verified == {"acme.com"}
    # The record is removed: not a revocation.
    second = await observe_sso_domain(snap, Txt({}), first)
    assert second.verified == {"acme.com"}
    result = reconcile(snap, dns=second)
    assert set(result.entry) == {"acme.com"}
    # After a restart (no previous observation) the status remembers it.
    restarted = await observe_sso_domain(with_status(snap, result.status), Txt({}), None)
    assert restarted.verified == {"acme.com"}
    # A domain dropped from the spec loses it.
    dropped = domain_snap(
        "acme", ["acme.io"], created=OLD, uid="u-1", spec_extra={"verification": {"method": "DNS"}}
    )
    assert (await observe_sso_domain(with_status(dropped, result.status), Txt({}), second)).verified == set()


def test_conditions_and_messages_say_exactly_what_holds() -> None:
    """What `kubectl describe` shows for the common states (wording users and runbooks rely on)."""
    ready = reconcile(domain_snap("acme", ["acme.com", "acme.io"], created=OLD, spec_extra={"enforcement": "Optional"}))
    assert cond(ready.status, "Ready")["message"] == "acme.com, acme.io log in through okta (Optional)."
    assert cond(ready.status, "DomainsVerified").items() >= {
        "status": "True", "reason": "NotRequired", "message": "verification.method is None."
    }.items()
    assert cond(ready.status, "IdentityProviderReady").items() >= {
        "status": "True", "reason": "Ready", "message": "IdentityProvider okta is Ready."
    }.items()
    missing = reconcile_sso_domain(
        domain_snap("acme", ["acme.com"], created=OLD), {}, None, None, cluster_scoped=False, now=NOW
    )
    assert cond(missing.status, "IdentityProviderReady").items() >= {
        "status": "False", "reason": "IdentityProviderNotFound",
        "message": f"IdentityProvider okta does not exist in namespace {NS}.",
    }.items()
    broken = reconcile_sso_domain(
        domain_snap("acme", ["acme.com"], created=OLD), {},
        IdPState(exists=True, ready=False, serving=False, reason="MetadataMalformed"), None,
        cluster_scoped=False, now=NOW,
    )
    assert cond(broken.status, "IdentityProviderReady").items() >= {
        "status": "False", "reason": "IdentityProviderNotReady",
        "message": "IdentityProvider okta is not Ready (MetadataMalformed): see its status.",
    }.items()
    claimed = reconcile(domain_snap("copy", ["acme.com", "acme.io"], created=NEW),
                        [domain_snap("acme", ["acme.com"], created=OLD), domain_snap("io", ["acme.io"], created=OLD)])
    assert cond(claimed.status, "Ready")["message"] == (
        "Already claimed by an older SSODomain: acme.com (owned by acme), acme.io (owned by io). "
        "Remove them here or from the owner."
    )
    invalid = reconcile(domain_snap("greedy", ["co.uk", "github.io"], created=OLD))
    message = cond(invalid.status, "Ready")["message"]
    assert message.startswith("spec.domains: co.uk is a public suffix") and "; github.io is a public suffix" in message
    assert message.endswith("claim your registered domain instead.")
    assert invalid.status["conditions"] and cond(invalid.status, "Stalled")["status"] == "True"


def test_dns_verification_records_and_messages() -> None:
    dns_spec = {"verification": {"method": "DNS"}}
    # Rendered objects have no uid yet: the record value then derives from namespace and name.
    offline = domain_snap("acme", ["acme.com"], created=OLD, uid="", spec_extra=dns_spec)
    records = reconcile(offline).status["verification"]
    assert records == [{
        "domain": "acme.com",
        "recordName": "_keyplane-challenge.acme.com",
        "recordValue": challenge_value("", NS, "acme", "acme.com"),
    }]
    assert records[0]["recordValue"] != challenge_value("", "other", "acme", "acme.com")
    assert records[0]["recordValue"] != challenge_value("", NS, "other", "acme.com")
    assert len(records[0]["recordValue"]) == len("keyplane-verification=") + 40
    pending = reconcile(offline, dns=DnsObservation(frozenset(), None))
    assert cond(pending.status, "DomainsVerified")["message"] == (
        "Publish the TXT records listed in status.verification for acme.com; the operator re-checks periodically."
    )
    assert cond(pending.status, "Ready")["message"] == (
        "Publish the TXT records listed in status.verification; the domains are enforced once verified."
    )
    failing = reconcile(offline, dns=DnsObservation(frozenset(), "acme.com: DNS lookup timed out"))
    assert cond(failing.status, "DomainsVerified")["message"].endswith(" Last check: acme.com: DNS lookup timed out.")
    done = reconcile(offline, dns=DnsObservation(frozenset({"acme.com"}), None))
    assert cond(done.status, "DomainsVerified").items() >= {
        "status": "True", "reason": "Verified", "message": "Every domain's TXT record was found."
    }.items()

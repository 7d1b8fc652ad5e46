"""reconcile_sso_domain: domain claims, the IdP's readiness, DNS verification, break-glass users."""

from __future__ import annotations

from typing import Any

from keyplane_op_helpers import NOW, NS, cond, cstate, domain_snap, with_status

from keyplane.reconcile.model import Snapshot
from keyplane.reconcile.ssodomain import (
    Claim,
    DnsObservation,
    IdPState,
    build_claim_book,
    challenge_value,
    reconcile_sso_domain,
)

READY_IDP = IdPState(exists=True, ready=True, serving=True, reason="Ready")


def reconcile(
    snap: Snapshot,
    others: list[Snapshot] = (),
    idp: IdPState | None = READY_IDP,  # type: ignore[assignment]
    dns: DnsObservation | None = None,
    cluster: bool = False,
) -> Any:
    book = build_claim_book([snap, *others], cluster)
    return reconcile_sso_domain(snap, book, idp, dns, cluster_scoped=cluster, now=NOW)


def phase(status: dict[str, Any]) -> tuple[str, str, str]:
    return (
        cond(status, "Ready")["status"],
        cond(status, "Reconciling")["status"],
        cond(status, "Stalled")["status"],
    )


def test_claim_book_orders_oldest_first_then_by_name() -> None:
    snaps = [
        domain_snap("zeta", ["acme.com"], created="2026-01-01T00:00:00Z"),
        domain_snap("beta", ["acme.com", "acme.io"], created="2026-02-01T00:00:00Z"),
        domain_snap("alpha", ["acme.com"], created="2026-01-01T00:00:00Z"),
        domain_snap("gone", ["acme.com"], created="2025-01-01T00:00:00Z", deleting=True),
    ]
    book = build_claim_book(snaps, cluster_scoped=False)
    assert [c.name for c in book[(NS, "acme.com")]] == ["alpha", "zeta", "beta"]
    assert [c.name for c in book[(NS, "acme.io")]] == ["beta"]
    assert (
        sorted([Claim("2026-01-02T00:00:00Z", NS, "a"), Claim("2026-01-01T00:00:00Z", NS, "z")])[0].name
        == "z"
    )


def test_oldest_claim_owns_the_domain_and_a_later_claimant_is_stalled_naming_it() -> None:
    owner = domain_snap("acme", ["acme.com"], created="2026-01-01T00:00:00Z")
    later = domain_snap("acme-copy", ["acme.com", "acme.net"], created="2026-03-01T00:00:00Z", idp="other")

    mine = reconcile(owner, [later])
    assert phase(mine.status) == ("True", "False", "False")
    assert set(mine.entry) == {"acme.com"}

    theirs = reconcile(later, [owner])
    assert phase(theirs.status) == ("False", "False", "True")
    ready = cond(theirs.status, "Ready")
    assert ready["reason"] == "DomainClaimed"
    assert "acme.com (owned by acme)" in ready["message"]
    assert {d["name"]: d["claimedBy"] for d in theirs.status["domains"]} == {
        "acme.com": "acme",
        "acme.net": "acme-copy",
    }
    # What it owns uncontested still counts; what it lost does not.
    assert set(theirs.entry) == {"acme.net"}
    assert theirs.entry["acme.net"]["identityProvider"] == "other"
    assert ("Warning", "DomainClaimed") in [(e.type, e.reason) for e in theirs.events]


def test_domain_is_handed_over_when_the_owner_is_gone() -> None:
    owner = domain_snap("acme", ["acme.com"], created="2026-01-01T00:00:00Z")
    later = domain_snap("acme-copy", ["acme.com"], created="2026-03-01T00:00:00Z")
    stalled = reconcile(later, [owner])
    assert cstate(stalled.status, "Ready") == ("False", "DomainClaimed")
    # The owner is deleted (absent, or being deleted): the next claimant takes over.
    for others in ([], [domain_snap("acme", ["acme.com"], created="2026-01-01T00:00:00Z", deleting=True)]):
        taken = reconcile(with_status(later, stalled.status), others)
        assert cstate(taken.status, "Ready") == ("True", "Ready")
        assert taken.status["domains"] == [{"name": "acme.com", "verified": True, "claimedBy": "acme-copy"}]
        assert set(taken.entry) == {"acme.com"}


def test_namespace_scope_lets_each_namespace_claim_a_domain_cluster_scope_does_not() -> None:
    first = domain_snap("acme", ["acme.com"], namespace="team-a", created="2026-01-01T00:00:00Z")
    second = domain_snap("acme", ["acme.com"], namespace="team-b", created="2026-02-01T00:00:00Z")
    assert cstate(reconcile(second, [first]).status, "Ready") == ("True", "Ready")

    clustered = reconcile(second, [first], cluster=True)
    assert cstate(clustered.status, "Ready") == ("False", "DomainClaimed")
    assert "owned by team-a/acme" in cond(clustered.status, "Ready")["message"]
    assert clustered.status["domains"][0]["claimedBy"] == "team-a/acme"
    assert clustered.entry == {}
    assert cstate(reconcile(first, [second], cluster=True).status, "Ready") == ("True", "Ready")


def test_missing_idp_is_reconciling_identity_provider_not_found() -> None:
    snap = domain_snap("acme", ["acme.com"])
    for idp in (None, IdPState(exists=False, ready=False, serving=False)):
        result = reconcile(snap, idp=idp)
        assert phase(result.status) == ("False", "True", "False")
        assert cstate(result.status, "Ready") == ("False", "IdentityProviderNotFound")
        assert cstate(result.status, "IdentityProviderReady") == ("False", "IdentityProviderNotFound")
        assert "okta" in cond(result.status, "Ready")["message"]
        assert result.entry == {}


def test_idp_not_ready_is_reconciling_and_serves_only_a_last_good_idp() -> None:
    snap = domain_snap("acme", ["acme.com"])
    broken = reconcile(
        snap, idp=IdPState(exists=True, ready=False, serving=False, reason="MetadataMalformed")
    )
    assert phase(broken.status) == ("False", "True", "False")
    assert cstate(broken.status, "IdentityProviderReady") == ("False", "IdentityProviderNotReady")
    assert "MetadataMalformed" in cond(broken.status, "Ready")["message"]
    assert broken.entry == {}
    # An IdP that is not Ready but still serves a last-known-good config keeps its domains routed to it.
    degraded = reconcile(snap, idp=IdPState(exists=True, ready=False, serving=True, reason="Expired"))
    assert cstate(degraded.status, "Ready") == ("False", "IdentityProviderNotReady")
    assert set(degraded.entry) == {"acme.com"}


def test_dns_verification_pending_keeps_domains_out_and_shows_the_txt_records() -> None:
    snap = domain_snap(
        "acme", ["acme.com", "acme.io"], uid="1111-aaaa", spec_extra={"verification": {"method": "DNS"}}
    )
    result = reconcile(snap, dns=DnsObservation(last_error="NXDOMAIN"))
    assert phase(result.status) == ("False", "True", "False")
    assert cstate(result.status, "Ready") == ("False", "VerificationPending")
    verified = cond(result.status, "DomainsVerified")
    assert (verified["status"], verified["reason"]) == ("False", "VerificationPending")
    assert "acme.com, acme.io" in verified["message"] and "NXDOMAIN" in verified["message"]
    assert result.entry == {}
    assert result.status["verification"] == [
        {
            "domain": d,
            "recordName": f"_keyplane-challenge.{d}",
            "recordValue": challenge_value("1111-aaaa", snap.namespace, snap.name, d),
        }
        for d in ("acme.com", "acme.io")
    ]
    assert all(r["recordValue"].startswith("keyplane-verification=") for r in result.status["verification"])
    assert [d["verified"] for d in result.status["domains"]] == [False, False]

    half = reconcile(snap, dns=DnsObservation(verified=frozenset({"acme.io"})))
    assert set(half.entry) == {"acme.io"}
    assert cstate(half.status, "Ready") == ("False", "VerificationPending")

    done = reconcile(snap, dns=DnsObservation(verified=frozenset({"acme.com", "acme.io"})))
    assert cstate(done.status, "Ready") == ("True", "Ready")
    assert cstate(done.status, "DomainsVerified") == ("True", "Verified")
    assert set(done.entry) == {"acme.com", "acme.io"}


def test_without_verification_domains_count_as_verified() -> None:
    result = reconcile(domain_snap("acme", ["acme.com"]))
    assert cstate(result.status, "DomainsVerified") == ("True", "NotRequired")
    assert "verification" not in result.status


def test_challenge_value_is_stable_per_uid_and_differs_across_uids_and_domains() -> None:
    value = challenge_value("uid-1", NS, "acme", "acme.com")
    assert value == challenge_value("uid-1", NS, "acme", "acme.com")
    assert value == challenge_value("uid-1", "elsewhere", "renamed", "acme.com")  # the uid decides
    assert value != challenge_value("uid-2", NS, "acme", "acme.com")
    assert value != challenge_value("uid-1", NS, "acme", "acme.io")


def test_break_glass_users_are_split_per_domain_lowercased() -> None:
    snap = domain_snap(
        "acme",
        ["acme.com", "acme.io"],
        spec_extra={
            "breakGlassUsers": ["root@acme.com", "Ops@ACME.io", "admin@acme.com"],
            "enforcement": "Required",
        },
    )
    entries = reconcile(snap).entry
    assert entries == {
        "acme.com": {
            "identityProvider": "okta",
            "enforcement": "Required",
            "breakGlassUsers": ["admin@acme.com", "root@acme.com"],
        },
        "acme.io": {
            "identityProvider": "okta",
            "enforcement": "Required",
            "breakGlassUsers": ["ops@acme.io"],
        },
    }


def test_invalid_spec_is_stalled_with_no_entries() -> None:
    snap = domain_snap("acme", ["ACME.com"])
    result = reconcile(snap)
    assert phase(result.status) == ("False", "False", "True")
    assert cstate(result.status, "Ready") == ("False", "InvalidSpec")
    assert "spec.domains" in cond(result.status, "Ready")["message"]
    assert result.entry == {}

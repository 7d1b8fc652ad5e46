"""fit_bundle: a namespace's bundle over the 1 MiB a Secret holds is cut to what fits, never written whole.

Entries here are small synthetic dicts and the limits small, so each rule is seen on a handful of objects;
test_render_bundle_limit.py runs the same code at the real limit through `keyplane render`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyplane.reconcile import bundlefit
from keyplane.reconcile.bundle import build_bundle, serialize_bundle
from keyplane.reconcile.bundlefit import fit_bundle

ROLES = ("Admin", "Member")


def idp(name: str, size: int = 200, version: int = 1) -> dict[str, Any]:
    return {"protocol": "SAML", "x509cert": f"{name}-v{version}-" + "c" * size}


def domain(idp_name: str) -> dict[str, Any]:
    return {"identityProvider": idp_name, "enforcement": "Required"}


def scim(idp_name: str, token: str = "t1") -> dict[str, Any]:
    return {"identityProvider": idp_name, "tokenSha256": [token]}


def tenants(*names: str, size: int = 200) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], list[str]]]:
    """Each name: an IdentityProvider, an SSODomain (domain <name>.example) and a ScimConnection."""
    wanted: dict[str, dict[str, Any]] = {"identityProviders": {}, "domains": {}, "scim": {}}
    contributions: dict[tuple[str, str], list[str]] = {}
    for name in names:
        wanted["identityProviders"][name] = idp(name, size)
        wanted["domains"][f"{name}.example"] = domain(name)
        wanted["scim"][name] = scim(name)
        contributions[("IdentityProvider", name)] = [name]
        contributions[("SSODomain", name)] = [f"{name}.example"]
        contributions[("ScimConnection", name)] = [name]
    return wanted, contributions


def size_of(wanted: dict[str, dict[str, Any]]) -> int:
    return len(serialize_bundle(build_bundle(ROLES, wanted["identityProviders"], wanted["domains"], wanted["scim"])))


def as_previous(wanted: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return json.loads(serialize_bundle(build_bundle(ROLES, *wanted.values())))


def test_a_bundle_that_fits_is_written_whole() -> None:
    wanted, contributions = tenants("a", "b", "c")
    fit = fit_bundle(ROLES, wanted, None, contributions, limit=size_of(wanted))
    assert fit.refused == frozenset()
    assert fit.data == serialize_bundle(build_bundle(ROLES, *wanted.values()))
    assert fit.wanted_bytes == len(fit.data)


def test_over_the_limit_whole_tenants_are_admitted_in_name_order_and_the_rest_refused() -> None:
    wanted, contributions = tenants("a", "b", "c", "d")
    two_tenants, _ = tenants("a", "b")
    limit = size_of(two_tenants) + 100  # room for two tenants, not three
    fit = fit_bundle(ROLES, wanted, None, contributions, limit=limit)
    assert len(fit.data) <= limit
    assert fit.wanted_bytes == size_of(wanted)
    assert set(fit.bundle["identityProviders"]) == {"a", "b"}
    assert set(fit.bundle["domains"]) == {"a.example", "b.example"}
    assert set(fit.bundle["scim"]) == {"a", "b"}
    assert fit.refused == {(kind, name) for kind in ("IdentityProvider", "SSODomain", "ScimConnection")
                           for name in ("c", "d")}


def test_a_domain_is_never_admitted_without_its_identity_provider() -> None:
    wanted, contributions = tenants("a", "b")
    big = dict(wanted["identityProviders"])
    big["b"] = idp("b", size=5000)
    wanted["identityProviders"] = big
    fit = fit_bundle(ROLES, wanted, None, contributions, limit=size_of(tenants("a")[0]) + 400)
    # b's domain and SCIM entries are small enough to fit, but b itself is not: they are refused with it.
    assert "b" not in fit.bundle["identityProviders"]
    assert "b.example" not in fit.bundle["domains"] and "b" not in fit.bundle["scim"]
    assert {("SSODomain", "b"), ("ScimConnection", "b")} <= fit.refused


def test_removals_apply_even_when_what_is_wanted_does_not_fit() -> None:
    before, _ = tenants("gone", "kept")
    wanted, contributions = tenants("kept", "new1", "new2")
    fit = fit_bundle(ROLES, wanted, as_previous(before), contributions, limit=size_of(before))
    assert "gone" not in fit.bundle["identityProviders"]
    assert "gone.example" not in fit.bundle["domains"] and "gone" not in fit.bundle["scim"]
    assert "kept" in fit.bundle["identityProviders"]


def test_changes_to_entries_already_served_come_before_new_tenants() -> None:
    before, _ = tenants("z")
    wanted, contributions = tenants("a", "z")
    wanted["identityProviders"]["z"] = idp("z", size=300, version=2)  # z's new certificate is 100 bytes longer
    tenant_a = size_of(tenants("a", "z")[0]) - size_of(before)
    # Room for the new tenant a (first by name) or for z's change, not both: z's change goes first.
    fit = fit_bundle(ROLES, wanted, as_previous(before), contributions, limit=size_of(before) + tenant_a + 50)
    assert fit.bundle["identityProviders"]["z"] == idp("z", size=300, version=2)
    assert ("IdentityProvider", "z") not in fit.refused
    assert {("SSODomain", "a"), ("ScimConnection", "a")} & fit.refused


def test_a_refused_change_keeps_the_entry_last_written() -> None:
    before, _ = tenants("a")
    wanted, contributions = tenants("a")
    wanted["identityProviders"]["a"] = idp("a", size=4000, version=2)
    fit = fit_bundle(ROLES, wanted, as_previous(before), contributions, limit=size_of(before) + 100)
    assert fit.refused == {("IdentityProvider", "a")}
    assert fit.bundle["identityProviders"]["a"] == idp("a")
    assert fit.bundle["domains"]["a.example"] == domain("a")


def test_a_kept_domain_whose_identity_provider_is_gone_is_dropped() -> None:
    before, _ = tenants("old")
    wanted, contributions = tenants("new")
    # The SSODomain "old" now points its domain at the new IdP; that IdP does not fit, the old one was deleted.
    wanted["identityProviders"]["new"] = idp("new", size=5000)
    wanted["domains"] = {"old.example": domain("new")}
    contributions = {("IdentityProvider", "new"): ["new"], ("SSODomain", "old"): ["old.example"]}
    wanted["scim"] = {}
    fit = fit_bundle(ROLES, wanted, as_previous(before), contributions, limit=size_of(before))
    assert fit.bundle["identityProviders"] == {}
    assert fit.bundle["domains"] == {}  # old.example -> "old" would name an IdP the bundle no longer has


def test_when_the_estimate_is_off_no_change_is_admitted(monkeypatch: pytest.MonkeyPatch) -> None:
    before, _ = tenants("a")
    wanted, contributions = tenants("a", "b", "c")
    monkeypatch.setattr(bundlefit, "_entry_bytes", lambda *_: 0)  # every change looks free
    limit = size_of(before) + 10
    fit = fit_bundle(ROLES, wanted, as_previous(before), contributions, limit=limit)
    assert len(fit.data) <= limit
    assert set(fit.bundle["identityProviders"]) == {"a"}
    assert fit.refused == {(kind, name) for kind in ("IdentityProvider", "SSODomain", "ScimConnection")
                           for name in ("b", "c")}


def test_the_size_of_each_admitted_change_is_counted_to_the_byte() -> None:
    """One byte short of a whole tenant in an empty bundle: its IdP and domain come in, its SCIM entry does not.
    (An estimate that is short by a byte would admit the SCIM entry and then, once measured, nothing.)"""
    wanted, contributions = tenants("a", "b")
    fit = fit_bundle(ROLES, wanted, None, contributions, limit=size_of(tenants("a")[0]) - 1)
    assert set(fit.bundle["identityProviders"]) == {"a"} and set(fit.bundle["domains"]) == {"a.example"}
    assert fit.refused == {("ScimConnection", "a")} | {(kind, "b") for kind in bundlefit.SECTION_OF_KIND}


@pytest.mark.parametrize("headroom", [0, 300])
def test_a_change_to_a_served_entry_is_counted_to_the_byte(headroom: int) -> None:
    """Up to the limit itself, whatever the headroom, with text that takes more bytes than characters. One
    byte short, a's change (first in order) is left out and b's smaller one still comes in: a count short
    by a byte would take both, and once measured, neither."""
    before, _ = tenants("a", "b")
    wanted, contributions = tenants("a", "b", "c")
    wanted["identityProviders"]["a"] = {**idp("a", size=300, version=2), "displayName": "Zürich Ärzte ✓"}
    wanted["scim"]["b"] = scim("b", token="t2")
    with_changes = tenants("a", "b")[0]
    with_changes["identityProviders"]["a"] = wanted["identityProviders"]["a"]
    with_changes["scim"]["b"] = wanted["scim"]["b"]
    new_tenant = {(kind, "c") for kind in bundlefit.SECTION_OF_KIND}
    served = fit_bundle(ROLES, wanted, as_previous(before), contributions, limit=size_of(with_changes),
                        headroom=headroom)
    assert served.bundle["identityProviders"]["a"] == wanted["identityProviders"]["a"]
    assert served.bundle["scim"]["b"] == scim("b", token="t2")
    assert served.refused == new_tenant
    short = fit_bundle(ROLES, wanted, as_previous(before), contributions, limit=size_of(with_changes) - 1,
                       headroom=headroom)
    assert short.bundle["identityProviders"]["a"] == idp("a")
    assert short.bundle["scim"]["b"] == scim("b", token="t2")
    assert short.refused == {("IdentityProvider", "a")} | new_tenant


def test_a_bundle_already_past_the_additions_limit_is_kept_whole() -> None:
    """Written before the headroom existed (or filled by changes to served entries): nothing served goes,
    and nobody is told BundleTooLarge for an entry that is served."""
    before, contributions = tenants("a", "b")
    fit = fit_bundle(ROLES, before, as_previous(before), contributions, limit=size_of(before) + 10, headroom=500)
    assert fit.refused == frozenset()
    assert fit.bundle == as_previous(before)


def test_new_tenants_stop_the_headroom_short_of_the_limit() -> None:
    wanted, contributions = tenants("a", "b", "c")
    tenant = size_of(wanted) - size_of(tenants("a", "b")[0])
    headroom = 2 * tenant
    limit = size_of(wanted) + tenant  # the whole fits under the limit; under limit - headroom, only a and b
    fit = fit_bundle(ROLES, wanted, None, contributions, limit=limit, headroom=headroom)
    assert len(fit.data) <= limit - headroom
    assert set(fit.bundle["identityProviders"]) == {"a", "b"}
    assert {name for _, name in fit.refused} == {"c"}


def test_a_served_entry_may_change_into_the_headroom() -> None:
    """A rotated SCIM token (already in its token Secret) and a certificate rollover fit in a namespace that
    new tenants have filled up to the limit less the headroom; a new tenant does not."""
    before, _ = tenants("a", "b")
    wanted, contributions = tenants("a", "b", "new")
    wanted["scim"]["a"] = scim("a", token="t2")
    wanted["scim"]["a"]["tokenSha256"].append("t1")
    wanted["identityProviders"]["b"] = idp("b", size=600, version=2)
    headroom = 1000
    fit = fit_bundle(ROLES, wanted, as_previous(before), contributions, limit=size_of(before) + headroom,
                     headroom=headroom)
    assert fit.bundle["scim"]["a"]["tokenSha256"] == ["t2", "t1"]
    assert fit.bundle["identityProviders"]["b"] == idp("b", size=600, version=2)
    assert "new" not in fit.bundle["identityProviders"]
    assert {name for _, name in fit.refused} == {"new"}


def test_when_the_estimate_is_off_no_new_entry_goes_into_the_headroom(monkeypatch: pytest.MonkeyPatch) -> None:
    before, _ = tenants("a")
    wanted, contributions = tenants("a", "b")
    monkeypatch.setattr(bundlefit, "_entry_bytes", lambda *_: 0)  # every change looks free
    headroom = size_of(wanted) - size_of(before)
    fit = fit_bundle(ROLES, wanted, as_previous(before), contributions, limit=size_of(wanted), headroom=headroom)
    assert set(fit.bundle["identityProviders"]) == {"a"}
    assert {name for _, name in fit.refused} == {"b"}


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=12),
    served=st.integers(min_value=0, max_value=12),
    slack=st.integers(min_value=0, max_value=6000),
    headroom=st.integers(min_value=0, max_value=3000),
)
def test_the_bundle_written_fits_and_holds_no_refused_change(
    sizes: list[int], served: int, slack: int, headroom: int
) -> None:
    names = [f"t{i:02d}" for i in range(len(sizes))]
    before, _ = tenants(*names[:served])
    wanted, contributions = tenants(*names)
    for name, size in zip(names, sizes, strict=True):
        wanted["identityProviders"][name] = idp(name, size, version=2)
    limit = size_of(before) + slack
    fit = fit_bundle(ROLES, wanted, as_previous(before), contributions, limit=limit, headroom=headroom)
    assert len(fit.data) <= limit
    if set(fit.bundle["identityProviders"]) - set(before["identityProviders"]):  # a new tenant came in
        assert len(fit.data) <= limit - headroom
    for kind, name in contributions:
        section = bundlefit.SECTION_OF_KIND[kind]
        for key in contributions[(kind, name)]:
            if (kind, name) in fit.refused:
                assert fit.bundle[section].get(key) != wanted[section][key]
            else:
                assert fit.bundle[section].get(key) == wanted[section][key]
    for entry in fit.bundle["domains"].values():
        assert entry["identityProvider"] in fit.bundle["identityProviders"]

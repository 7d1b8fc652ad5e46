from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from keyplane.app import Bundle, BundleError, BundleStore, LoginRouter, highest_role
from keyplane.app.roles import effective_role

from .helpers import bundle_dict


def k8s_swap(directory: Path, content: str, generation: int) -> None:
    """Do what the kubelet's atomic writer does: new timestamped dir, then swap ``..data``."""
    target = directory / f"..2026_11_23_{generation}"
    target.mkdir()
    (target / "identity.json").write_text(content)
    tmp = directory / "..data_tmp"
    os.symlink(target.name, tmp)
    os.replace(tmp, directory / "..data")
    link = directory / "identity.json"
    if not link.is_symlink():
        os.symlink("..data/identity.json", link)


def test_reload_on_symlink_swap_and_keep_last_good(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    k8s_swap(tmp_path, json.dumps(bundle_dict()), 1)
    store = BundleStore(tmp_path / "identity.json", poll_interval=0, required=True)
    seen: list[Bundle] = []
    store.on_change(seen.append)
    assert set(store.bundle.scim) == {"okta", "entra"}
    first = store.bundle.sha256

    document = bundle_dict()
    del document["scim"]["entra"]
    k8s_swap(tmp_path, json.dumps(document), 2)
    assert set(store.bundle.scim) == {"okta"}
    assert len(seen) == 1 and store.bundle.sha256 != first

    # A partial write (truncated JSON) and an invalid bundle keep the last good one, and say why.
    caplog.set_level(logging.WARNING, "keyplane.app.bundle")
    good = store.bundle.sha256
    k8s_swap(tmp_path, json.dumps(bundle_dict())[:100], 3)
    assert store.bundle.sha256 == good
    assert "not valid JSON" in (store.last_error or "")
    assert "keeping the last good identity bundle" in caplog.text
    k8s_swap(tmp_path, json.dumps({**bundle_dict(), "apiVersion": "v0"}), 4)
    assert store.bundle.sha256 == good and "apiVersion" in (store.last_error or "")
    (tmp_path / "..data").unlink()
    assert store.bundle.sha256 == good and "cannot read" in (store.last_error or "")
    k8s_swap(tmp_path, json.dumps(bundle_dict()), 5)
    assert set(store.bundle.scim) == {"okta", "entra"} and store.last_error is None
    assert len(seen) == 2


def test_missing_file_required(tmp_path: Path) -> None:
    with pytest.raises(BundleError):
        BundleStore(tmp_path / "nope.json", required=True)
    assert BundleStore(tmp_path / "nope.json").bundle.scim == {}


def test_bundle_validation() -> None:
    document = bundle_dict()
    document["scim"]["okta"]["defaultUserRole"] = "Owner"
    with pytest.raises(BundleError, match="unknown role"):
        Bundle.from_dict(document)
    document = bundle_dict()
    document["domains"]["x.com"] = {"identityProvider": "nope", "enforcement": "Required"}
    with pytest.raises(BundleError, match="unknown identity provider"):
        Bundle.from_dict(document)


@pytest.mark.parametrize("enforcement", [None, "", "required", "Enforced", True])
def test_missing_or_unknown_enforcement_is_an_error_not_optional(enforcement: object) -> None:
    """Read as Optional, a bundle entry without enforcement would open password login to a Required domain."""
    document = bundle_dict()
    if enforcement is None:
        del document["domains"]["acme.com"]["enforcement"]
    else:
        document["domains"]["acme.com"]["enforcement"] = enforcement
    with pytest.raises(BundleError, match=r"acme\.com: (enforcement is missing|unknown enforcement)"):
        Bundle.from_dict(document)


def test_break_glass_users_are_canonical_in_the_bundle() -> None:
    """An operator (or hand-written bundle) that wrote Root@ACME.com still matches root@acme.com."""
    document = bundle_dict()
    document["domains"]["acme.com"]["breakGlassUsers"] = ["Root@ACME.com"]
    router = LoginRouter(Bundle.from_dict(document))
    assert router.local_login_allowed("root@acme.com")
    assert router.local_login_allowed("ROOT@acme.com.")
    assert not router.local_login_allowed("alice@acme.com")


def test_login_routing() -> None:
    router = LoginRouter(Bundle.from_dict(bundle_dict()))
    route = router.route("Alice@ACME.com")
    assert route.identity_provider == "okta" and route.protocol == "SAML" and route.sso_required
    assert not route.local_login_allowed and route.login_path == "/sso/saml/okta/login"
    assert router.local_login_allowed("root@acme.com")  # break-glass
    assert not router.local_login_allowed("alice@eu.acme.com")  # subdomains follow their parent
    optional = router.route("bob@contoso.com")
    assert (
        optional.identity_provider == "entra" and optional.local_login_allowed and not optional.sso_required
    )
    free = router.route("carol@gmail.com")
    assert free.identity_provider is None and free.local_login_allowed
    assert router.route("not-an-email").identity_provider is None


def test_routing_matches_whole_labels_not_string_suffixes() -> None:
    """x@evilacme.com is not an acme.com address: a suffix match would route it to okta (and Required)."""
    router = LoginRouter(Bundle.from_dict(bundle_dict()))
    for address in ("x@evilacme.com", "x@notacme.com", "x@acme.com.evil.io"):
        route = router.route(address)
        assert route.identity_provider is None and route.domain != "acme.com", address
        assert route.local_login_allowed, address
    assert router.route("x@deep.eu.acme.com").domain == "acme.com"


@pytest.mark.parametrize(
    "spelling",
    [
        "ALICE@ACME.COM",
        "alice@acme.com.",
        "alice@ACME.com.",
        "alice@\uff41\uff43\uff4d\uff45.com",  # fullwidth: IDNA maps it to acme.com
        "alice@eu.acme.com",
    ],
)
def test_every_spelling_of_a_required_domain_stays_required(spelling: str) -> None:
    router = LoginRouter(Bundle.from_dict(bundle_dict()))
    route = router.route(spelling)
    assert route.identity_provider == "okta" and not route.local_login_allowed, spelling


@pytest.mark.parametrize(
    "address",
    [
        "alice\u200b@acme.com",  # zero-width space
        "alice@acme.com\u200b",
        "alice@ac\u00adme.com",  # soft hyphen
        "alice\u3164@acme.com",  # Hangul filler: a letter that renders as nothing
        "alice\u2060@acme.com",  # word joiner (Cf)
        "alice@@acme.com",
        "alice@evil@acme.com",
        "alice@\u0430cme.com",  # Cyrillic a: mixed-script confusable of acme.com
        " alice@acme.com",
        "alice@acme.com\n",
        "",
    ],
)
def test_local_login_fails_closed_on_addresses_without_a_canonical_form(address: str) -> None:
    """A Required domain must not be escapable by spelling its address oddly."""
    router = LoginRouter(Bundle.from_dict(bundle_dict()))
    assert not router.local_login_allowed(address)
    route = router.route(address)
    assert route.email is None and not route.local_login_allowed and route.identity_provider is None


def test_roles_follow_bundle_order() -> None:
    bundle = Bundle.from_dict(bundle_dict())
    okta, entra = bundle.scim["okta"], bundle.scim["entra"]
    assert highest_role(bundle.roles, ["Viewer", "Admin", "Member"]) == "Admin"
    assert effective_role(bundle.roles, okta, []) == "Viewer"
    assert effective_role(bundle.roles, okta, ["platform-admins"]) == "Admin"
    assert effective_role(bundle.roles, okta, ["unbound"]) == "Viewer"  # unboundGroupRole None
    assert effective_role(bundle.roles, entra, ["unbound"]) == "Member"
    assert effective_role(bundle.roles, okta, ["platform-admins"], active=False) is None
    reordered = Bundle.from_dict({**bundle_dict(), "roles": ["Viewer", "Member", "Admin"]})
    assert effective_role(reordered.roles, okta, ["platform-admins"]) == "Viewer"

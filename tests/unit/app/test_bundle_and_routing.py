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
    document["domains"]["x.com"] = {"identityProvider": "nope"}
    with pytest.raises(BundleError, match="unknown identity provider"):
        Bundle.from_dict(document)


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

"""reconcile_namespace and the bundle: deterministic bytes, deletions, python3-saml accepts SAML entries."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from keyplane_op_helpers import (
    NOW,
    NS,
    cond,
    cstate,
    domain_snap,
    idp_metadata,
    idp_snap,
    make_cert,
    oidc_spec,
    ready_observation,
    saml_spec,
    scim_snap,
    settings,
    with_status,
)
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from keyplane.oidc.discovery import OIDCProviderMetadata
from keyplane.reconcile import namespace as namespace_module
from keyplane.reconcile.bundle import (
    BUNDLE_HASH_ANNOTATION,
    BUNDLE_KEY,
    bundle_secret,
    bundle_sha256,
    parse_bundle_secret,
    serialize_bundle,
)
from keyplane.reconcile.identityprovider import IdPObservation
from keyplane.reconcile.namespace import NamespaceInputs, NamespaceResult, reconcile_namespace
from keyplane.reconcile.scimtoken import TokenState, token_sha256
from keyplane.reconcile.ssodomain import build_claim_book

SETTINGS = settings()
TOKEN = TokenState(token_sha256("scim-token-value-1234567890"), NOW, None, None)
PROVIDER = OIDCProviderMetadata(
    "https://accounts.example.com",
    "https://accounts.example.com/auth",
    "https://accounts.example.com/token",
    "https://accounts.example.com/jwks",
)


def world() -> tuple[list[Any], dict[str, IdPObservation]]:
    okta = idp_snap("okta")
    keycloak = idp_snap("keycloak", saml_spec(signAuthnRequests=False))
    google = idp_snap("google", oidc_spec())
    snaps = [
        okta,
        keycloak,
        google,
        domain_snap(
            "acme", ["acme.com", "acme.io"], "okta", spec_extra={"breakGlassUsers": ["root@acme.com"]}
        ),
        domain_snap(
            "contractors", ["contractors.example"], "keycloak", spec_extra={"enforcement": "Optional"}
        ),
        domain_snap("gmail-users", ["example.org"], "google"),
        scim_snap("okta"),
        scim_snap("local", spec={"groupBindings": [{"group": "ops", "role": "Viewer"}]}),
    ]
    observations = {
        "okta": ready_observation(okta),
        "keycloak": ready_observation(
            keycloak,
            idp_metadata(
                make_cert("kc.example.com", key_index=2),
                entity_id="https://kc.example.com/realms/x",
                binding="HTTP-POST",
            ),
            signing=None,
            from_url=False,
        ),
        "google": IdPObservation(
            generation=1,
            oidc=PROVIDER,
            client_secret="client-secret-value",
            resolved_generation=1,
            from_url=True,
        ),
    }
    return snaps, observations


def run(
    snaps: list[Any],
    observations: dict[str, IdPObservation],
    previous: dict[str, Any] | None = None,
    *,
    now: Any = NOW,
    tokens: dict[str, TokenState] | None = None,
) -> NamespaceResult:
    tokens = {s.name: TOKEN for s in snaps if s.kind == "ScimConnection"} | (tokens or {})
    inputs = NamespaceInputs(
        NS,
        snaps,
        observations,
        tokens,
        {},
        build_claim_book([s for s in snaps if s.kind == "SSODomain"], False),
        previous,
    )
    return reconcile_namespace(inputs, SETTINGS, now)


def test_full_namespace_bundle_contents() -> None:
    snaps, observations = world()
    result = run(snaps, observations)
    bundle = result.bundle
    assert bundle is not None and result.data is not None
    assert bundle["apiVersion"] == "keyplane.dev/bundle-v1"
    assert bundle["roles"] == ["Admin", "Member", "Viewer"]
    assert set(bundle["identityProviders"]) == {"okta", "keycloak", "google"}
    assert bundle["domains"] == {
        "acme.com": {
            "identityProvider": "okta",
            "enforcement": "Required",
            "breakGlassUsers": ["root@acme.com"],
        },
        "acme.io": {"identityProvider": "okta", "enforcement": "Required", "breakGlassUsers": []},
        "contractors.example": {
            "identityProvider": "keycloak",
            "enforcement": "Optional",
            "breakGlassUsers": [],
        },
        "example.org": {"identityProvider": "google", "enforcement": "Required", "breakGlassUsers": []},
    }
    assert set(bundle["scim"]) == {"okta", "local"}
    assert bundle["scim"]["okta"]["tokenHashes"] == [{"sha256": TOKEN.current_sha256, "notAfter": None}]
    assert json.loads(result.data) == bundle
    assert all(cstate(r.status, "Ready")[0] == "True" for r in result.results.values())


def test_every_saml_entry_is_accepted_by_python3_saml() -> None:
    snaps, observations = world()
    bundle = run(snaps, observations).bundle
    assert bundle is not None
    saml_entries = {n: e for n, e in bundle["identityProviders"].items() if e["protocol"] == "SAML"}
    assert set(saml_entries) == {"okta", "keycloak"}
    for name, entry in saml_entries.items():
        parsed = OneLogin_Saml2_Settings(json.loads(json.dumps(entry["saml"])))
        assert parsed.get_errors() == [], name
        assert parsed.get_sp_data()["entityId"] == f"https://platform.example.com/sso/saml/{name}"
        assert parsed.get_idp_data()["singleSignOnService"]["url"]


def test_same_inputs_give_byte_identical_bundles_whatever_the_order() -> None:
    snaps, observations = world()
    first = run(snaps, observations).data
    again = run(
        list(reversed(snaps)), dict(reversed(list(observations.items()))), now=NOW + timedelta(minutes=30)
    ).data
    assert first == again
    assert first is not None and first.endswith(b"\n")
    changed = run(snaps[:-1], observations).data  # one ScimConnection less
    assert changed != first


def test_deleting_an_idp_removes_its_domains_and_scim_and_says_why() -> None:
    snaps, observations = world()
    previous = run(snaps, observations).bundle
    for gone in (
        [s for s in snaps if s.name != "okta" or s.kind != "IdentityProvider"],
        [
            s if (s.kind, s.name) != ("IdentityProvider", "okta") else idp_snap("okta", deleting=True)
            for s in snaps
        ],
    ):
        result = run(gone, observations, previous)
        bundle = result.bundle
        assert bundle is not None
        assert "okta" not in bundle["identityProviders"]
        assert not {"acme.com", "acme.io"} & set(bundle["domains"])
        assert "contractors.example" in bundle["domains"]
        assert "okta" not in bundle["scim"] and "local" in bundle["scim"]
        assert cstate(result.results[("SSODomain", "acme")].status, "Ready") == (
            "False",
            "IdentityProviderNotFound",
        )
        assert cstate(result.results[("ScimConnection", "okta")].status, "Ready") == (
            "False",
            "IdentityProviderNotFound",
        )
        assert ("IdentityProvider", "okta") not in result.results


def test_an_empty_namespace_has_no_bundle() -> None:
    result = run([], {})
    assert result.bundle is None and result.data is None and result.results == {}
    only_deleting = run([idp_snap("okta", deleting=True)], {})
    assert only_deleting.bundle is None


def test_not_ready_idp_keeps_domains_out_until_resolved() -> None:
    snaps, observations = world()
    observations = {k: v for k, v in observations.items() if k != "okta"}  # okta not read yet
    result = run(snaps, observations)
    assert result.bundle is not None
    assert "okta" not in result.bundle["identityProviders"]
    assert "acme.com" not in result.bundle["domains"]
    assert cstate(result.results[("SSODomain", "acme")].status, "Ready") == (
        "False",
        "IdentityProviderNotReady",
    )


def test_bundle_secret_manifest_and_parse_round_trip() -> None:
    snaps, observations = world()
    result = run(snaps, observations)
    assert result.data is not None
    owners = [s.owner_reference(controller=False) for s in snaps]
    secret = bundle_secret("keyplane-identity", NS, result.data, owners)
    assert secret["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "keyplane"}
    assert secret["metadata"]["annotations"][BUNDLE_HASH_ANNOTATION] == bundle_sha256(result.data)
    assert all(not o["controller"] for o in secret["metadata"]["ownerReferences"])
    assert base64.b64decode(secret["data"][BUNDLE_KEY]) == result.data
    assert parse_bundle_secret(secret) == result.bundle
    assert parse_bundle_secret({"data": {BUNDLE_KEY: base64.b64encode(b"{not json").decode()}}) is None
    assert parse_bundle_secret({"stringData": {BUNDLE_KEY: '{"apiVersion": "other/v1"}'}}) is None
    assert parse_bundle_secret(None) is None


def served_world() -> tuple[list[Any], dict[str, IdPObservation], dict[str, Any]]:
    """world() after its pass was written: every status stored and its bundle in the Secret."""
    snaps, observations = world()
    first = run(snaps, observations)
    assert first.bundle is not None
    return [with_status(s, first.results[(s.kind, s.name)].status) for s in snaps], observations, first.bundle


def test_a_new_tenant_over_the_secret_limit_is_stalled_and_the_served_ones_stay_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snaps, observations, served = served_world()
    monkeypatch.setattr(namespace_module, "SECRET_DATA_MAX_BYTES", len(serialize_bundle(served)) + 200)
    newcorp = idp_snap("newcorp")
    result = run([*snaps, newcorp, domain_snap("newcorp", ["newcorp.example"], "newcorp")],
                 {**observations, "newcorp": ready_observation(newcorp)}, served)
    assert result.bundle == served  # nothing of the new tenant fits
    for kind in ("IdentityProvider", "SSODomain"):
        status = result.results[(kind, "newcorp")].status
        assert cstate(status, "Ready") == ("False", "BundleTooLarge")
        assert cstate(status, "Stalled") == ("True", "BundleTooLarge")
        assert f"namespace {NS}'s identity bundle" in cond(status, "Ready")["message"]
        assert "to another namespace" in cond(status, "Ready")["message"]
        assert [(e.type, e.reason) for e in result.results[(kind, "newcorp")].events
                if e.reason == "BundleTooLarge"] == [("Warning", "BundleTooLarge")]
    others = [r for (kind, name), r in result.results.items() if name != "newcorp"]
    assert others and all(cstate(r.status, "Ready") == ("True", "Ready") for r in others)


def test_a_change_left_out_keeps_the_status_of_what_is_served(monkeypatch: pytest.MonkeyPatch) -> None:
    snaps, observations, served = served_world()
    monkeypatch.setattr(namespace_module, "SECRET_DATA_MAX_BYTES", len(serialize_bundle(served)) + 200)
    before = next(s for s in snaps if (s.kind, s.name) == ("ScimConnection", "okta"))
    bindings = [{"group": f"team-{i:03d}", "role": "Member"} for i in range(40)]
    changed = scim_snap("okta", {**before.spec, "groupBindings": bindings}, generation=2, status=before.status)
    result = run([changed if s is before else s for s in snaps], observations, served)
    assert result.bundle == served
    status = result.results[("ScimConnection", "okta")].status
    assert cstate(status, "Ready") == ("False", "BundleTooLarge")
    assert status["observedGeneration"] == 2
    kept = {k: v for k, v in before.status.items() if k not in ("conditions", "observedGeneration")}
    assert kept and {k: status[k] for k in kept} == kept



def test_a_token_rotation_is_served_in_a_namespace_that_new_tenants_have_filled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rotated token is in its Secret before the pass (the IdP admin may paste it at once), so the bundle
    must take the new hash: new entries stop short of the limit to leave that room."""
    snaps, observations, served = served_world()
    # The bundle is at the additions limit, with room under the Secret's for a whole new tenant.
    monkeypatch.setattr(namespace_module, "SECRET_DATA_MAX_BYTES", len(serialize_bundle(served)) + 20 * 1024)
    monkeypatch.setattr(namespace_module, "UPDATE_HEADROOM_BYTES", 20 * 1024)
    rotated = TokenState(token_sha256("scim-token-value-rotated-0987654321"), NOW,
                         TOKEN.current_sha256, NOW + timedelta(days=1))
    newcorp = idp_snap("newcorp")
    result = run([*snaps, newcorp], {**observations, "newcorp": ready_observation(newcorp)}, served,
                 tokens={"okta": rotated})
    assert result.bundle is not None
    assert [h["sha256"] for h in result.bundle["scim"]["okta"]["tokenHashes"]] == [
        rotated.current_sha256, TOKEN.current_sha256]
    assert cstate(result.results[("ScimConnection", "okta")].status, "Ready") == ("True", "Ready")
    assert "newcorp" not in result.bundle["identityProviders"]  # it would have fit in the headroom
    status = result.results[("IdentityProvider", "newcorp")].status
    assert cstate(status, "Ready") == ("False", "BundleTooLarge")
    assert "new entries stop 20 KiB short of that" in cond(status, "Ready")["message"]

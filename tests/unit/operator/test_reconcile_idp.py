"""reconcile_identity_provider: every path from observation to status, bundle entry and events."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from keyplane_op_helpers import (
    NOW,
    cond,
    cstate,
    idp_metadata,
    idp_snap,
    make_cert,
    oidc_spec,
    ready_observation,
    saml_spec,
    settings,
    sp_pair,
    undeclared_fields,
    with_status,
)
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from keyplane.contract import sp_metadata_xml
from keyplane.oidc.discovery import OIDCProviderMetadata
from keyplane.reconcile.identityprovider import IdPObservation, reconcile_identity_provider
from keyplane.reconcile.model import Problem

SETTINGS = settings()
FETCH_FAILED = Problem(
    "MetadataUnreachable", "GET https://acme.okta.example/metadata timed out", transient=True
)
MALFORMED = Problem("MetadataMalformed", "the document is not XML", transient=False)
PROVIDER = OIDCProviderMetadata(
    issuer="https://accounts.example.com",
    authorization_endpoint="https://accounts.example.com/o/auth",
    token_endpoint="https://accounts.example.com/o/token",
    jwks_uri="https://accounts.example.com/o/jwks",
    userinfo_endpoint="https://accounts.example.com/o/userinfo",
)


def reconcile(
    snap: Any, obs: IdPObservation | None, previous: dict[str, Any] | None = None, **kw: Any
) -> Any:
    return reconcile_identity_provider(snap, obs, previous, kw.pop("settings", SETTINGS), kw.pop("now", NOW))


def phase(status: dict[str, Any]) -> tuple[str, str, str]:
    return (
        cond(status, "Ready")["status"],
        cond(status, "Reconciling")["status"],
        cond(status, "Stalled")["status"],
    )


def test_ready_saml_idp_reports_the_urls_to_paste_and_a_python3_saml_entry() -> None:
    snap = idp_snap(spec=saml_spec("https://platform.example.com/"))
    result = reconcile(snap, ready_observation(snap))
    status = result.status
    assert phase(status) == ("True", "False", "False")
    assert cstate(status, "Ready") == ("True", "Ready")
    assert cstate(status, "MetadataResolved") == ("True", "Resolved")
    assert cstate(status, "CertificateValid") == ("True", "Valid")
    assert status["observedGeneration"] == 1
    assert status["serviceProvider"] == {
        "entityID": "https://platform.example.com/sso/saml/okta",
        "acsURL": "https://platform.example.com/sso/saml/okta/acs",
        "sloURL": "https://platform.example.com/sso/saml/okta/slo",
        "metadataURL": "https://platform.example.com/sso/saml/okta/metadata",
        "signingCertificateSecretRef": {"name": "okta-sp-signing", "key": "tls.crt"},
    }
    assert "https://platform.example.com/sso/saml/okta/acs" in cond(status, "Ready")["message"]
    assert status["identityProvider"]["entityID"] == "http://www.okta.com/exk1"
    assert status["identityProvider"]["ssoURL"] == "https://acme.okta.example/sso/saml"
    assert len(status["identityProvider"]["certificates"]) == 1
    entry = result.entry
    assert entry["protocol"] == "SAML"
    assert entry["saml"]["sp"]["entityId"] == "https://platform.example.com/sso/saml/okta"
    assert (
        entry["saml"]["sp"]["assertionConsumerService"]["url"]
        == "https://platform.example.com/sso/saml/okta/acs"
    )
    assert entry["saml"]["idp"]["entityId"] == "http://www.okta.com/exk1"
    assert entry["saml"]["security"]["authnRequestsSigned"] is True
    assert OneLogin_Saml2_Settings(entry["saml"], sp_validation_only=False).get_errors() == []
    # The SP private key is in the entry (a Secret), never in status.
    assert sp_pair().private_key_pem.strip().splitlines()[1] not in json.dumps(status)


def test_default_base_url_comes_from_settings() -> None:
    snap = idp_snap(spec=saml_spec(None, signAuthnRequests=False))
    result = reconcile(snap, ready_observation(snap, signing=None))
    assert result.status["serviceProvider"]["acsURL"] == "https://default.example.com/sso/saml/okta/acs"
    assert "signingCertificateSecretRef" not in result.status["serviceProvider"]
    assert "privateKey" not in result.entry["saml"]["sp"]
    assert result.entry["saml"]["security"]["authnRequestsSigned"] is False


def test_invalid_spec_is_stalled_and_keeps_the_previous_entry() -> None:
    spec = saml_spec()
    spec["saml"]["metadata"]["inline"] = "<x/>"  # two sources
    snap = idp_snap(spec=spec, generation=3)
    previous = {"protocol": "SAML", "saml": {"marker": True}}
    result = reconcile(snap, ready_observation(snap), previous)
    assert phase(result.status) == ("False", "False", "True")
    ready = cond(result.status, "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "spec.saml.metadata" in ready["message"]
    assert ready["observedGeneration"] == 3
    assert result.entry is previous
    assert [e.type for e in result.events] == ["Warning"]


def test_no_observation_yet_is_reconciling() -> None:
    snap = idp_snap(generation=2)
    for obs in (None, ready_observation(idp_snap(generation=1))):  # nothing, or an older generation's
        result = reconcile(snap, obs)
        assert phase(result.status) == ("False", "True", "False")
        assert cstate(result.status, "Ready") == ("False", "Resolving")
        assert result.entry is None
        # The URLs are known before the IdP is read: the admin can set the IdP up meanwhile.
        assert result.status["serviceProvider"]["acsURL"].endswith("/sso/saml/okta/acs")


def test_failed_refresh_of_the_same_url_serves_last_known_good() -> None:
    snap = idp_snap()
    good = reconcile(snap, ready_observation(snap))
    obs = ready_observation(
        snap,
        problem=FETCH_FAILED,
        metadata={"lastAttemptTime": "2026-06-01T13:00:00Z", "lastSuccessTime": "2026-06-01T12:00:00Z"},
    )
    result = reconcile(with_status(snap, good.status), obs, good.entry, now=NOW + timedelta(hours=1))
    assert phase(result.status) == ("True", "False", "False")
    assert cstate(result.status, "Ready") == ("True", "LastKnownGood")
    assert "2026-06-01T12:00:00Z" in cond(result.status, "Ready")["message"]
    assert cstate(result.status, "MetadataResolved") == ("False", "MetadataUnreachable")
    assert result.entry == good.entry
    # Ready stayed True: its transition time did not move; a Warning says the refresh failed.
    assert (
        cond(result.status, "Ready")["lastTransitionTime"] == cond(good.status, "Ready")["lastTransitionTime"]
    )
    assert ("Warning", "MetadataUnreachable") in [(e.type, e.reason) for e in result.events]
    assert ("Warning", "LastKnownGood") in [(e.type, e.reason) for e in result.events]


def test_permanent_parse_failure_without_last_good_is_stalled_with_no_entry() -> None:
    snap = idp_snap()
    obs = IdPObservation(generation=1, problem=MALFORMED, signing=sp_pair(), from_url=True)
    result = reconcile(snap, obs)
    assert phase(result.status) == ("False", "False", "True")
    assert cstate(result.status, "Ready") == ("False", "MetadataMalformed")
    assert cstate(result.status, "MetadataResolved") == ("False", "MetadataMalformed")
    assert result.entry is None


def test_transient_failure_without_last_good_is_reconciling() -> None:
    snap = idp_snap()
    result = reconcile(
        snap, IdPObservation(generation=1, problem=FETCH_FAILED, signing=sp_pair(), from_url=True)
    )
    assert phase(result.status) == ("False", "True", "False")
    assert cstate(result.status, "Ready") == ("False", "MetadataUnreachable")
    assert result.entry is None


def test_user_broken_document_is_stalled_but_the_last_good_config_stays_in_the_bundle() -> None:
    snap = idp_snap(generation=2)
    last_good = ready_observation(idp_snap(generation=1))
    obs = IdPObservation(
        generation=2,
        saml=last_good.saml,
        resolved_generation=1,
        problem=MALFORMED,
        signing=sp_pair(),
        from_url=False,
    )
    result = reconcile(snap, obs)
    assert phase(result.status) == ("False", "False", "True")
    assert "last working configuration stays" in cond(result.status, "Ready")["message"]
    assert result.entry is not None and result.entry["saml"]["idp"]["entityId"] == "http://www.okta.com/exk1"


def test_expired_certificates_stall_with_reason_expired_while_the_entry_stays() -> None:
    expired = make_cert("old.example.com", NOW - timedelta(days=400), NOW - timedelta(days=1))
    snap = idp_snap()
    result = reconcile(snap, ready_observation(snap, idp_metadata(expired)))
    assert phase(result.status) == ("False", "False", "True")
    assert cstate(result.status, "Ready") == ("False", "Expired")
    assert cstate(result.status, "CertificateValid") == ("False", "Expired")
    assert "expired" in cond(result.status, "CertificateValid")["message"]
    assert result.entry is not None
    assert result.status["identityProvider"]["certificates"][0]["notAfter"] == "2026-05-31T12:00:00Z"


def test_expiring_soon_is_ready_with_a_warning_event() -> None:
    soon = make_cert("soon.example.com", NOW - timedelta(days=300), NOW + timedelta(days=5))
    snap = idp_snap()
    result = reconcile(snap, ready_observation(snap, idp_metadata(soon)))
    assert phase(result.status) == ("True", "False", "False")
    assert cstate(result.status, "CertificateValid") == ("True", "ExpiringSoon")
    warnings = [e for e in result.events if e.type == "Warning"]
    assert [e.reason for e in warnings] == ["ExpiringSoon"]
    # The warning window is a setting.
    quiet = reconcile(
        snap,
        ready_observation(snap, idp_metadata(soon)),
        settings=settings(certificate_expiry_warning=timedelta(days=1)),
    )
    assert cstate(quiet.status, "CertificateValid") == ("True", "Valid")


def test_certificate_and_sso_url_change_post_identity_provider_changed() -> None:
    snap = idp_snap()
    before = reconcile(snap, ready_observation(snap))
    rolled = idp_metadata(
        make_cert("new.example.com", key_index=2), sso_url="https://acme.okta.example/sso/v2"
    )
    after_snap = with_status(snap, before.status)
    result = reconcile(after_snap, ready_observation(after_snap, rolled))
    changed = [e for e in result.events if e.reason == "IdentityProviderChanged"]
    assert len(changed) == 1
    message = changed[0].message
    assert "SSO URL https://acme.okta.example/sso/saml -> https://acme.okta.example/sso/v2" in message
    new_fp = result.status["identityProvider"]["certificates"][0]["sha256"]
    old_fp = before.status["identityProvider"]["certificates"][0]["sha256"]
    assert f"certificates added: {new_fp[:23]}" in message
    assert f"certificates removed: {old_fp[:23]}" in message
    # Reconciling the same world again says nothing.
    again = reconcile(with_status(after_snap, result.status), ready_observation(after_snap, rolled))
    assert again.events == []


def test_oidc_entry_holds_endpoints_and_secret_but_status_does_not() -> None:
    snap = idp_snap("google", oidc_spec())
    obs = IdPObservation(
        generation=1, oidc=PROVIDER, client_secret="s3cr3t-value-xyz", resolved_generation=1, from_url=True
    )
    result = reconcile(snap, obs)
    assert phase(result.status) == ("True", "False", "False")
    assert result.status["serviceProvider"] == {
        "redirectURI": "https://platform.example.com/sso/oidc/google/callback",
        "postLogoutRedirectURI": "https://platform.example.com/sso/oidc/google/logged-out",
    }
    assert result.status["identityProvider"]["authorizationEndpoint"] == PROVIDER.authorization_endpoint
    oidc = result.entry["oidc"]
    assert oidc == {
        "issuer": "https://accounts.example.com",
        "clientID": "client-abc",
        "clientSecret": "s3cr3t-value-xyz",
        "authorizationEndpoint": PROVIDER.authorization_endpoint,
        "tokenEndpoint": PROVIDER.token_endpoint,
        "jwksURI": PROVIDER.jwks_uri,
        "userinfoEndpoint": PROVIDER.userinfo_endpoint,
        "endSessionEndpoint": None,
        "scopes": ["openid", "email", "profile"],
        "redirectURI": "https://platform.example.com/sso/oidc/google/callback",
        "postLogoutRedirectURI": "https://platform.example.com/sso/oidc/google/logged-out",
        "allowMissingEmailVerified": False,
    }
    assert result.entry["protocol"] == "OIDC"
    assert "s3cr3t-value-xyz" not in json.dumps(result.status)
    assert all("s3cr3t-value-xyz" not in e.message for e in result.events)


def test_missing_client_secret_is_reconciling_client_secret_not_found() -> None:
    snap = idp_snap("google", oidc_spec())
    obs = IdPObservation(
        generation=1, oidc=PROVIDER, client_secret=None, resolved_generation=1, from_url=True
    )
    result = reconcile(snap, obs)
    assert phase(result.status) == ("False", "True", "False")
    ready = cond(result.status, "Ready")
    assert ready["reason"] == "ClientSecretNotFound"
    assert "google-oidc" in ready["message"] and "client-secret" in ready["message"]
    assert result.entry is None


def test_public_oidc_client_needs_no_secret() -> None:
    snap = idp_snap("google", oidc_spec(secret=False))
    result = reconcile(
        snap, IdPObservation(generation=1, oidc=PROVIDER, resolved_generation=1, from_url=True)
    )
    assert cstate(result.status, "Ready") == ("True", "Ready")
    assert result.entry["oidc"]["clientSecret"] is None


def test_missing_sp_signing_pair_blocks_the_entry_until_issued() -> None:
    snap = idp_snap()
    result = reconcile(snap, ready_observation(snap, signing=None))
    assert phase(result.status) == ("False", "True", "False")
    assert cstate(result.status, "Ready") == ("False", "IssuingSigningKey")
    assert result.entry is None


def test_steady_state_keeps_status_identical() -> None:
    snap = idp_snap()
    first = reconcile(snap, ready_observation(snap))
    again = reconcile(
        with_status(snap, first.status), ready_observation(snap), first.entry, now=NOW + timedelta(hours=5)
    )
    assert again.status == first.status
    assert again.entry == first.entry
    assert again.events == []


def test_every_status_field_is_declared_in_the_crd() -> None:
    # Undeclared fields are pruned by the API server: invisible to users, and a diff on every reconcile.
    saml = idp_snap()
    oidc = idp_snap("google", oidc_spec())
    statuses = [
        reconcile(saml, ready_observation(saml)).status,
        reconcile(saml, ready_observation(saml, problem=FETCH_FAILED)).status,
        reconcile(
            oidc,
            IdPObservation(
                generation=1, oidc=PROVIDER, client_secret="x", resolved_generation=1, from_url=True
            ),
        ).status,
    ]
    for status in statuses:
        assert undeclared_fields("IdentityProvider", status) == []


def test_sha1_is_refused_in_the_bundle_unless_the_idp_allows_it() -> None:
    snap = idp_snap(spec=saml_spec())
    assert reconcile(snap, ready_observation(snap)).entry["saml"]["security"]["rejectDeprecatedAlgorithm"] is True
    old_adfs = idp_snap(spec=saml_spec(allowDeprecatedAlgorithms=True))
    entry = reconcile(old_adfs, ready_observation(old_adfs)).entry
    assert entry["saml"]["security"]["rejectDeprecatedAlgorithm"] is False
    assert OneLogin_Saml2_Settings(entry["saml"], sp_validation_only=False).get_errors() == []


def test_missing_email_verified_opt_in_reaches_the_bundle() -> None:
    spec = oidc_spec()
    spec["oidc"]["allowMissingEmailVerified"] = True
    snap = idp_snap("entra", spec)
    obs = IdPObservation(generation=1, oidc=PROVIDER, client_secret="x", resolved_generation=1, from_url=True)
    assert reconcile(snap, obs).entry["oidc"]["allowMissingEmailVerified"] is True


def test_encrypted_assertions_need_the_sp_key_pair_even_without_signed_requests() -> None:
    spec = saml_spec(None, signAuthnRequests=False, wantAssertionsEncrypted=True)
    snap = idp_snap(spec=spec)
    waiting = reconcile(snap, ready_observation(snap, signing=None))
    assert cstate(waiting.status, "Ready") == ("False", "IssuingSigningKey")
    result = reconcile(snap, ready_observation(snap))
    security = result.entry["saml"]["security"]
    assert security["wantAssertionsEncrypted"] is True and security["authnRequestsSigned"] is False
    assert result.entry["saml"]["sp"]["privateKey"] == sp_pair().private_key_pem
    assert result.status["serviceProvider"]["signingCertificateSecretRef"]["name"] == "okta-sp-signing"
    metadata = sp_metadata_xml(result.entry["saml"])
    assert 'use="encryption"' in metadata and 'use="signing"' in metadata

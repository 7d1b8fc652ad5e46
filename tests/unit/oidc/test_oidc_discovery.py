"""OIDC discovery documents and JWKS, modelled on what real providers publish."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, OKPKey, RSAKey

from keyplane.oidc.discovery import (
    DiscoveryError,
    OIDCProviderMetadata,
    count_signing_keys,
    discovery_url,
    parse_discovery,
)

GOOGLE: dict[str, Any] = {
    "issuer": "https://accounts.google.com",
    "authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
    "device_authorization_endpoint": "https://oauth2.googleapis.com/device/code",
    "token_endpoint": "https://oauth2.googleapis.com/token",
    "userinfo_endpoint": "https://openidconnect.googleapis.com/v1/userinfo",
    "revocation_endpoint": "https://oauth2.googleapis.com/revoke",
    "jwks_uri": "https://www.googleapis.com/oauth2/v3/certs",
    "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "none"],
    "subject_types_supported": ["public"],
    "id_token_signing_alg_values_supported": ["RS256"],
    "scopes_supported": ["openid", "email", "profile"],
    "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
    "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "name", "sub"],
    "code_challenge_methods_supported": ["plain", "S256"],
}

KC = "https://kc.example.com/realms/acme"
KEYCLOAK: dict[str, Any] = {
    "issuer": KC,
    "authorization_endpoint": f"{KC}/protocol/openid-connect/auth",
    "token_endpoint": f"{KC}/protocol/openid-connect/token",
    "introspection_endpoint": f"{KC}/protocol/openid-connect/token/introspect",
    "userinfo_endpoint": f"{KC}/protocol/openid-connect/userinfo",
    "end_session_endpoint": f"{KC}/protocol/openid-connect/logout",
    "frontchannel_logout_session_supported": True,
    "jwks_uri": f"{KC}/protocol/openid-connect/certs",
    "check_session_iframe": f"{KC}/protocol/openid-connect/login-status-iframe.html",
    "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password"],
    "response_types_supported": ["code", "none", "id_token", "token", "id_token token"],
    "subject_types_supported": ["public", "pairwise"],
    "id_token_signing_alg_values_supported": ["PS384", "ES384", "RS384", "HS256", "RS256", "ES256", "EdDSA"],
    "scopes_supported": ["openid", "microprofile-jwt", "profile", "email", "roles", "web-origins"],
    "mtls_endpoint_aliases": {"token_endpoint": f"{KC}/protocol/openid-connect/token"},
}

TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
ENTRA_BASE = f"https://login.microsoftonline.com/{TENANT}"
ENTRA: dict[str, Any] = {
    "token_endpoint": f"{ENTRA_BASE}/oauth2/v2.0/token",
    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
    "jwks_uri": f"{ENTRA_BASE}/discovery/v2.0/keys",
    "response_modes_supported": ["query", "fragment", "form_post"],
    "subject_types_supported": ["pairwise"],
    "id_token_signing_alg_values_supported": ["RS256"],
    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
    "scopes_supported": ["openid", "profile", "email", "offline_access"],
    "issuer": f"{ENTRA_BASE}/v2.0",
    "request_uri_parameter_supported": False,
    "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
    "authorization_endpoint": f"{ENTRA_BASE}/oauth2/v2.0/authorize",
    "device_authorization_endpoint": f"{ENTRA_BASE}/oauth2/v2.0/devicecode",
    "http_logout_supported": True,
    "frontchannel_logout_supported": True,
    "end_session_endpoint": f"{ENTRA_BASE}/oauth2/v2.0/logout",
    "claims_supported": ["sub", "iss", "aud", "exp", "iat", "email", "groups"],
    "kerberos_endpoint": f"{ENTRA_BASE}/kerberos",
    "tenant_region_scope": "EU",
    "cloud_instance_name": "microsoftonline.com",
    "msgraph_host": "graph.microsoft.com",
    "rbac_url": "https://pas.windows.net",
}


def doc(data: dict[str, Any], **changes: Any) -> bytes:
    merged = {**data, **changes}
    return json.dumps({k: v for k, v in merged.items() if v is not ...}).encode()


def error_of(fn: Any, *args: Any, **kwargs: Any) -> DiscoveryError:
    with pytest.raises(DiscoveryError) as exc:
        fn(*args, **kwargs)
    return exc.value


# --------------------------------------------------------------------------- discovery


def test_discovery_url() -> None:
    assert discovery_url("https://accounts.google.com") == (
        "https://accounts.google.com/.well-known/openid-configuration"
    )
    assert discovery_url(f"{KC}/") == f"{KC}/.well-known/openid-configuration"
    assert discovery_url(f"{ENTRA_BASE}/v2.0") == f"{ENTRA_BASE}/v2.0/.well-known/openid-configuration"


def test_google() -> None:
    md = parse_discovery(doc(GOOGLE), "https://accounts.google.com")
    assert md == OIDCProviderMetadata(
        issuer="https://accounts.google.com",
        authorization_endpoint="https://accounts.google.com/o/oauth2/v2/auth",
        token_endpoint="https://oauth2.googleapis.com/token",
        jwks_uri="https://www.googleapis.com/oauth2/v3/certs",
        userinfo_endpoint="https://openidconnect.googleapis.com/v1/userinfo",
        end_session_endpoint=None,
        scopes_supported=("openid", "email", "profile"),
        id_token_signing_alg_values_supported=("RS256",),
    )
    assert md.status_dict() == {
        "issuer": "https://accounts.google.com",
        "authorizationEndpoint": "https://accounts.google.com/o/oauth2/v2/auth",
        "tokenEndpoint": "https://oauth2.googleapis.com/token",
        "jwksURI": "https://www.googleapis.com/oauth2/v3/certs",
    }


def test_keycloak() -> None:
    md = parse_discovery(doc(KEYCLOAK), KC)
    assert md.issuer == KC
    assert md.jwks_uri == f"{KC}/protocol/openid-connect/certs"
    assert md.end_session_endpoint == f"{KC}/protocol/openid-connect/logout"
    assert "ES256" in md.id_token_signing_alg_values_supported


def test_entra() -> None:
    md = parse_discovery(doc(ENTRA), f"{ENTRA_BASE}/v2.0")
    assert md.token_endpoint == f"{ENTRA_BASE}/oauth2/v2.0/token"
    assert md.userinfo_endpoint == "https://graph.microsoft.com/oidc/userinfo"


def test_entra_common_endpoint_has_a_placeholder_issuer() -> None:
    common = doc(ENTRA, issuer="https://login.microsoftonline.com/{tenantid}/v2.0")
    err = error_of(parse_discovery, common, "https://login.microsoftonline.com/common/v2.0")
    assert err.reason == "IssuerMismatch"
    assert "tenant-specific" in err.message


@pytest.mark.parametrize(
    ("document_issuer", "configured"),
    [(KC, f"{KC}/"), (f"{KC}/", KC), ("https://KC.example.com/realms/acme", KC)],
)
def test_issuer_must_match_exactly(document_issuer: str, configured: str) -> None:
    err = error_of(parse_discovery, doc(KEYCLOAK, issuer=document_issuer), configured)
    assert err.reason == "IssuerMismatch"
    assert repr(document_issuer) in err.message and repr(configured) in err.message
    if document_issuer.rstrip("/") == configured.rstrip("/"):
        assert "trailing slash" in err.message


@pytest.mark.parametrize("missing", ["issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"])
def test_missing_required_fields(missing: str) -> None:
    err = error_of(parse_discovery, doc(GOOGLE, **{missing: ...}), "https://accounts.google.com")
    assert err.reason == "DiscoveryInvalid"
    assert missing in err.message


@pytest.mark.parametrize(
    "field",
    ["authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint", "end_session_endpoint"],
)
def test_http_endpoints_are_refused_unless_allowed(field: str) -> None:
    plain = KEYCLOAK[field].replace("https://", "http://")
    err = error_of(parse_discovery, doc(KEYCLOAK, **{field: plain}), KC)
    assert err.reason == "DiscoveryInvalid"
    assert field in err.message
    assert getattr(parse_discovery(doc(KEYCLOAK, **{field: plain}), KC, allow_http=True), field) == plain


def test_http_issuer_only_when_allowed() -> None:
    local = "http://keycloak.keycloak.svc:8080/realms/dev"
    data = {k: (v.replace(KC, local) if isinstance(v, str) else v) for k, v in KEYCLOAK.items()}
    assert error_of(parse_discovery, doc(data), local).reason == "DiscoveryInvalid"
    assert parse_discovery(doc(data), local, allow_http=True).issuer == local


@pytest.mark.parametrize(
    "changes",
    [
        {"jwks_uri": "javascript:alert(1)"},
        {"jwks_uri": "/relative/certs"},
        {"token_endpoint": 42},
        {"userinfo_endpoint": ["https://x"]},
        {"scopes_supported": "openid email"},
        {"id_token_signing_alg_values_supported": ["none"]},
    ],
)
def test_malformed_fields(changes: dict[str, Any]) -> None:
    assert error_of(parse_discovery, doc(GOOGLE, **changes), "https://accounts.google.com").reason == (
        "DiscoveryInvalid"
    )


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"<html>login page</html>",
        b"[1, 2]",
        b'"issuer"',
        b"\xff\xfe\x00",
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_garbage_discovery(garbage: bytes) -> None:
    err = error_of(parse_discovery, garbage, "https://accounts.google.com")
    assert err.reason == "DiscoveryInvalid"
    assert "login page" not in err.message


# --------------------------------------------------------------------------- JWKS


def rsa_jwk(**params: Any) -> dict[str, Any]:
    key = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return dict(key.as_dict(private=False, **params))


def ec_jwk(**params: Any) -> dict[str, Any]:
    key = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
    return dict(key.as_dict(private=False, **params))


def jwks(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


def test_rsa_and_ec_signing_keys() -> None:
    keys = (rsa_jwk(use="sig", alg="RS256", kid="r1"), ec_jwk(kid="e1"), rsa_jwk(key_ops=["verify"]))
    assert count_signing_keys(jwks(*keys)) == 3


def test_entra_style_keys_with_x5c_and_an_unknown_key_type() -> None:
    key = rsa_jwk(use="sig", kid="abc", x5t="abc", issuer=f"{ENTRA_BASE}/v2.0")
    unknown = {"kty": "ML-DSA", "kid": "pq1", "pub": "AAAA"}  # ignored per RFC 7517 §5
    assert count_signing_keys(jwks(key, unknown)) == 1


def test_okp_key_counts() -> None:
    assert count_signing_keys(jwks(dict(OKPKey.generate_key("Ed25519").as_dict(private=False)))) == 1


def test_encryption_only_jwks() -> None:
    err = error_of(
        count_signing_keys, jwks(rsa_jwk(use="enc", alg="RSA-OAEP"), ec_jwk(key_ops=["deriveKey"]))
    )
    assert err.reason == "NoSigningKeys"


def test_mixed_enc_and_sig_counts_only_sig() -> None:
    assert count_signing_keys(jwks(rsa_jwk(use="enc"), rsa_jwk(use="sig"), ec_jwk(use="enc"))) == 1


@pytest.mark.parametrize(
    "body", [jwks(), jwks({"kty": "XYZ", "kid": "a"}), jwks({"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0"})]
)
def test_no_usable_keys(body: bytes) -> None:
    err = error_of(count_signing_keys, body)
    assert err.reason == "NoSigningKeys"
    assert "c2VjcmV0" not in err.message


def test_private_key_material_is_refused_without_echoing_it() -> None:
    key = RSAKey.generate_key(2048)
    private = dict(key.as_dict(private=True))
    err = error_of(count_signing_keys, jwks(private))
    assert err.reason == "JWKSInvalid"
    assert str(private["d"]) not in err.message
    assert str(private["d"])[:16] not in err.message


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"keys": "abc"}',
        b'{"keys": [1, 2]}',
        b'{"no_keys": []}',
        jwks({"kty": "RSA", "n": "AQAB"}),  # missing "e"
        jwks({"kty": "EC", "crv": "P-256", "x": "!!", "y": "!!"}),
        jwks({"use": "sig"}),  # no kty at all
    ],
)
def test_garbage_jwks(body: bytes) -> None:
    assert error_of(count_signing_keys, body).reason == "JWKSInvalid"

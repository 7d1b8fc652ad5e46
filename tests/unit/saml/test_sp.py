"""SP key pair, python3-saml settings and SP metadata."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from keyplane.contract import sp_metadata_xml
from keyplane.saml.metadata import IdPMetadata, manual_idp_metadata, parse_idp_metadata
from keyplane.saml.safexml import parse_xml
from keyplane.saml.sp import (
    SPConfigError,
    build_saml_settings,
    generate_sp_signing_pair,
    sp_certificate_needs_renewal,
)

from .conftest import MD, NOW, IssuedCert, entity_xml, key_descriptor

BASE = "https://pipekit.example.com/sso/saml/okta"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


@pytest.fixture(scope="module")
def sp_pair() -> tuple[str, str]:
    return generate_sp_signing_pair(BASE, NOW)


def _settings(idp: IdPMetadata, sp_pair: tuple[str, str] | None, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "sp_entity_id": BASE,
        "acs_url": f"{BASE}/acs",
        "sls_url": None,
        "sp_cert_pem": sp_pair[0] if sp_pair else None,
        "sp_key_pem": sp_pair[1] if sp_pair else None,
        "idp": idp,
        "name_id_format": EMAIL,
        "sign_authn_requests": sp_pair is not None,
        "want_assertions_signed": True,
        "allow_idp_initiated": False,
    }
    args.update(overrides)
    return build_saml_settings(**args)


@pytest.fixture
def idp(cert: IssuedCert) -> IdPMetadata:
    return manual_idp_metadata(
        "urn:idp", "https://idp.example.com/sso", "HTTP-Redirect", None, [cert.cert_pem]
    )


def test_generated_pair(sp_pair: tuple[str, str]) -> None:
    cert_pem, key_pem = sp_pair
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.subject == cert.issuer
    assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - NOW == timedelta(days=365)
    assert "PRIVATE KEY" in key_pem and "PRIVATE KEY" not in cert_pem


def test_long_common_name_is_truncated() -> None:
    cert_pem, _ = generate_sp_signing_pair("https://" + "x" * 100, NOW, timedelta(days=1))
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    assert len(cert.subject.rfc4514_string()) <= 67


def test_needs_renewal(sp_pair: tuple[str, str]) -> None:
    cert_pem = sp_pair[0]
    assert not sp_certificate_needs_renewal(cert_pem, NOW)
    assert not sp_certificate_needs_renewal(cert_pem, NOW + timedelta(days=300))
    assert sp_certificate_needs_renewal(cert_pem, NOW + timedelta(days=340))
    assert sp_certificate_needs_renewal(cert_pem, NOW + timedelta(days=400))
    assert sp_certificate_needs_renewal(cert_pem, NOW + timedelta(days=300), renew_before=timedelta(days=90))
    assert sp_certificate_needs_renewal(cert_pem, NOW - timedelta(days=1))
    assert sp_certificate_needs_renewal("garbage", NOW)


def test_settings_accepted_by_python3_saml(idp: IdPMetadata, sp_pair: tuple[str, str]) -> None:
    settings = _settings(idp, sp_pair, sls_url=f"{BASE}/sls")
    parsed = OneLogin_Saml2_Settings(copy.deepcopy(settings), sp_validation_only=False)
    assert parsed.is_strict()
    assert settings["strict"] is True
    assert settings["idp"]["x509cert"] == idp.signing_certificates[0].der_b64
    assert "x509certMulti" not in settings["idp"]
    security = settings["security"]
    assert security["authnRequestsSigned"] is True
    assert security["wantAssertionsSigned"] is True
    assert security["wantMessagesSigned"] is False
    assert security["signatureAlgorithm"] == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    assert security["digestAlgorithm"] == "http://www.w3.org/2001/04/xmlenc#sha256"
    assert security["rejectUnsolicitedResponsesWithInResponseTo"] is True
    assert settings["sp"]["singleLogoutService"]["url"] == f"{BASE}/sls"


def test_settings_build_a_signed_login_redirect(idp: IdPMetadata, sp_pair: tuple[str, str]) -> None:
    request = {
        "https": "on",
        "http_host": "pipekit.example.com",
        "script_name": "/login",
        "get_data": {},
        "post_data": {},
    }
    auth = OneLogin_Saml2_Auth(request, _settings(idp, sp_pair))
    url = auth.login()
    assert url.startswith("https://idp.example.com/sso?SAMLRequest=")
    assert "Signature=" in url and "SigAlg=" in url


def test_idp_initiated_and_unsigned_requests(idp: IdPMetadata) -> None:
    settings = _settings(idp, None, allow_idp_initiated=True, want_assertions_signed=False)
    OneLogin_Saml2_Settings(copy.deepcopy(settings))
    assert settings["security"]["rejectUnsolicitedResponsesWithInResponseTo"] is False
    assert settings["security"]["authnRequestsSigned"] is False
    assert "privateKey" not in settings["sp"]


def test_signing_without_key_pair_is_refused(idp: IdPMetadata) -> None:
    with pytest.raises(SPConfigError):
        _settings(idp, None, sign_authn_requests=True)


def test_python3_saml_refusal_is_reported(idp: IdPMetadata) -> None:
    with pytest.raises(SPConfigError):
        _settings(idp, None, acs_url="not a url")


def test_several_idp_certs_use_x509cert_multi(
    cert: IssuedCert, other_cert: IssuedCert, sp_pair: tuple[str, str]
) -> None:
    md = parse_idp_metadata(
        entity_xml(
            keys=[
                key_descriptor(cert.der_b64),
                key_descriptor(other_cert.der_b64),
                key_descriptor(other_cert.der_b64, use="encryption"),
            ],
            slo=[("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST", "https://idp.example.com/slo")],
        )
    )
    settings = _settings(md, sp_pair)
    multi = settings["idp"]["x509certMulti"]
    assert multi == {"signing": [cert.der_b64, other_cert.der_b64], "encryption": [other_cert.der_b64]}
    assert "x509cert" not in settings["idp"]
    assert settings["idp"]["singleLogoutService"]["binding"].endswith("HTTP-POST")
    OneLogin_Saml2_Settings(copy.deepcopy(settings))


def test_settings_are_deterministic(idp: IdPMetadata, sp_pair: tuple[str, str]) -> None:
    assert _settings(idp, sp_pair) == _settings(idp, sp_pair)


def test_sp_metadata(idp: IdPMetadata, sp_pair: tuple[str, str]) -> None:
    settings = _settings(idp, sp_pair, sls_url=f"{BASE}/sls")
    before = copy.deepcopy(settings)
    xml = sp_metadata_xml(settings)
    assert settings == before  # input not mutated
    assert xml == sp_metadata_xml(settings)
    root = parse_xml(xml)
    assert root.tag == f"{{{MD}}}EntityDescriptor"
    assert root.get("entityID") == BASE
    assert root.get("validUntil") is None
    sp = root.find(f"{{{MD}}}SPSSODescriptor")
    assert sp.get("AuthnRequestsSigned") == "true"
    assert sp.find(f"{{{MD}}}AssertionConsumerService").get("Location") == f"{BASE}/acs"
    assert sp.find(f"{{{MD}}}SingleLogoutService").get("Location") == f"{BASE}/sls"
    cert_b64 = "".join(sp_pair[0].splitlines()[1:-1])
    assert cert_b64 in xml
    assert "PRIVATE" not in xml and sp_pair[1].splitlines()[1] not in xml
    assert OneLogin_Saml2_Settings(settings, sp_validation_only=True).validate_metadata(xml) == []


def test_sp_metadata_without_key_pair(idp: IdPMetadata) -> None:
    xml = sp_metadata_xml(_settings(idp, None))
    root = parse_xml(xml)
    assert root.find(f".//{{{MD}}}KeyDescriptor") is None
    assert root.find(f"{{{MD}}}SPSSODescriptor").get("AuthnRequestsSigned") == "false"

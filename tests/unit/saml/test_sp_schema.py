"""saml/schema.py gives python3-saml's verdict on SP metadata (it only keeps the compiled XSD)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from keyplane.contract import sp_metadata_xml
from keyplane.saml.metadata import manual_idp_metadata
from keyplane.saml.safexml import parse_xml
from keyplane.saml.schema import sp_metadata_errors
from keyplane.saml.sp import build_saml_settings

from .conftest import IssuedCert

BASE = "https://pipekit.example.com/sso/saml/okta"


@pytest.fixture
def settings(cert: IssuedCert) -> dict[str, Any]:
    idp = manual_idp_metadata("urn:idp", "https://idp.example.com/sso", "HTTP-Redirect", None, [cert.cert_pem])
    settings = build_saml_settings(
        sp_entity_id=BASE, acs_url=f"{BASE}/acs", sls_url=None, sp_cert_pem=None, sp_key_pem=None, idp=idp,
        name_id_format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress", sign_authn_requests=False,
        want_assertions_signed=True, allow_idp_initiated=False,
    )
    return settings


@pytest.fixture
def sp_xml(settings: dict[str, Any]) -> str:
    return sp_metadata_xml(settings)


@pytest.fixture
def python3_saml(settings: dict[str, Any]) -> Callable[[str], list[str]]:
    validator = OneLogin_Saml2_Settings(settings, sp_validation_only=True)
    return lambda xml: list(validator.validate_metadata(xml))


def _broken(sp_xml: str) -> dict[str, str]:
    descriptor_start = sp_xml.index("<md:SPSSODescriptor")
    descriptor = sp_xml[descriptor_start:sp_xml.index("</md:SPSSODescriptor>") + len("</md:SPSSODescriptor>")]
    return {
        "unknown element": sp_xml.replace("<md:AssertionConsumerService", "<md:Bogus/><md:AssertionConsumerService"),
        "no ACS": sp_xml.replace(sp_xml[sp_xml.index("<md:AssertionConsumerService"):
                                        sp_xml.index("/>", sp_xml.index("<md:AssertionConsumerService")) + 2], ""),
        "two SP descriptors": sp_xml.replace(descriptor, descriptor + descriptor),
        "expired": sp_xml.replace("<md:EntityDescriptor ", '<md:EntityDescriptor validUntil="2001-01-01T00:00:00Z" '),
    }


def test_valid_sp_metadata_passes_both(sp_xml: str, python3_saml: Callable[[str], list[str]]) -> None:
    assert sp_metadata_errors(parse_xml(sp_xml)) == [] == python3_saml(sp_xml)


@pytest.mark.parametrize("case", ["unknown element", "no ACS", "two SP descriptors", "expired"])
def test_broken_sp_metadata_gets_python3_saml_verdict(
    sp_xml: str, python3_saml: Callable[[str], list[str]], case: str
) -> None:
    xml = _broken(sp_xml)[case]
    ours = sp_metadata_errors(parse_xml(xml))
    assert ours != []
    assert ours == python3_saml(xml)

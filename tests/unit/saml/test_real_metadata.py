"""Real IdP metadata documents (../shared/fixtures/idp-metadata), judged with a frozen clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keyplane.saml.certificates import evaluate_certificates
from keyplane.saml.errors import MetadataError
from keyplane.saml.metadata import parse_idp_metadata
from keyplane.saml.signature import verify_metadata_signature
from support import missing

from .conftest import POST, REDIRECT, SHARED_FIXTURES


@pytest.fixture(autouse=True)
def shared_fixtures_present() -> None:
    if not SHARED_FIXTURES.is_dir():
        missing(f"shared IdP metadata fixtures not present at {SHARED_FIXTURES}")

WINDOW = timedelta(days=30)
SUSTAINSYS_FP = (
    "B2:1E:9C:59:CC:3D:B0:2C:3E:8E:0A:C6:BF:E1:AD:F9:5C:67:92:64:B4:35:DB:24:5E:19:1D:69:E9:68:18:5D"
)


def _at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


# file, entity ID to select, expected entity ID, SSO URL, binding, SLO URL, signing cert count,
# then (moment, expected CertificateValid reason) pairs.
CASES = [
    (
        "entra-id-common.xml",
        None,
        "https://sts.windows.net/{tenantid}/",
        "https://login.microsoftonline.com/common/saml2",
        REDIRECT,
        "https://login.microsoftonline.com/common/saml2",
        3,
        [
            (_at(2018, 6, 1), "Valid"),
            (_at(2019, 3, 10), "ExpiringSoon"),
            (_at(2019, 4, 1), "Expired"),
            (_at(2016, 1, 1), "NotYetValid"),
        ],
    ),
    (
        "adfs-v4.xml",
        None,
        "http://fs.msidlab11.com/adfs/services/trust",
        "https://fs.msidlab11.com/adfs/ls/",
        REDIRECT,
        "https://fs.msidlab11.com/adfs/ls/",
        1,
        [(_at(2017, 6, 1), "Valid"), (_at(2018, 1, 10), "ExpiringSoon"), (_at(2025, 1, 1), "Expired")],
    ),
    (
        "onelogin.xml",
        None,
        "https://app.onelogin.com/saml/metadata/383123",
        "https://app.onelogin.com/trust/saml2/http-post/sso/383123",
        REDIRECT,
        None,
        1,
        [(_at(2015, 1, 1), "Valid"), (_at(2025, 1, 1), "Expired")],
    ),
    (
        "rollover-two-signing.xml",
        None,
        "https://idp.examle.com/saml/metadata",
        "https://idp.examle.com/saml/sso",
        REDIRECT,
        "https://idp.examle.com/saml/slo",
        2,
        # 2018-04-01: one of the two expires within the window, the other lasts until 2021.
        [(_at(2018, 4, 1), "Valid"), (_at(2021, 7, 20), "ExpiringSoon"), (_at(2022, 1, 1), "Expired")],
    ),
    (
        "testshib-entities.xml",
        None,
        "https://idp.testshib.org/idp/shibboleth",
        "https://idp.testshib.org/idp/profile/SAML2/Redirect/SSO",
        REDIRECT,
        None,
        1,
        [(_at(2026, 1, 1), "Valid"), (_at(2037, 1, 1), "Expired")],
    ),
    (
        "sustainsys-stubidp-signed.xml",
        None,
        "https://stubidp.sustainsys.com/Metadata",
        "https://stubidp.sustainsys.com/",
        REDIRECT,
        "https://stubidp.sustainsys.com/Logout",
        1,
        [(_at(2026, 1, 1), "Valid")],
    ),
    (
        "sustainsys-stubidp-signed-then-altered.xml",
        None,
        "https://stubidp.sustainsys.com/Metadata",
        "https://attacker.example.net/",
        REDIRECT,
        "https://stubidp.sustainsys.com/Logout",
        1,
        [(_at(2026, 1, 1), "Valid")],
    ),
    (
        "swamid-multi-idp.xml",
        "https://idp.umu.se/saml2/idp/metadata.php",
        "https://idp.umu.se/saml2/idp/metadata.php",
        "https://idp.umu.se/saml2/idp/SSOService.php",
        REDIRECT,
        "https://idp.umu.se/saml2/idp/SingleLogoutService.php",
        1,
        [(_at(2010, 1, 1), "Valid"), (_at(2026, 1, 1), "Expired")],
    ),
]


def test_every_shared_fixture_is_covered() -> None:
    assert {p.name for p in SHARED_FIXTURES.glob("*.xml")} == {c[0] for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_real_metadata(case: tuple) -> None:  # type: ignore[type-arg]
    name, select, entity_id, sso_url, binding, slo_url, cert_count, judgements = case
    md = parse_idp_metadata((SHARED_FIXTURES / name).read_bytes(), select)
    assert md.entity_id == entity_id
    assert md.sso_url == sso_url
    assert md.sso_binding == binding
    assert md.slo_url == slo_url
    assert len(md.signing_certificates) == cert_count
    assert len({c.sha256 for c in md.signing_certificates}) == cert_count
    for now, reason in judgements:
        assert evaluate_certificates(list(md.signing_certificates), now, WINDOW)[0] == reason, now


def test_real_metadata_as_text_too() -> None:
    text = (SHARED_FIXTURES / "testshib-entities.xml").read_text(encoding="utf-8")
    assert parse_idp_metadata(text).entity_id == "https://idp.testshib.org/idp/shibboleth"


def test_swamid_federation_needs_an_entity_id() -> None:
    data = (SHARED_FIXTURES / "swamid-multi-idp.xml").read_bytes()
    with pytest.raises(MetadataError) as caught:
        parse_idp_metadata(data)
    assert caught.value.reason == "EntitySelectionRequired"
    assert "https://idp.umu.se/saml2/idp/metadata.php" in caught.value.message
    # A SAML 1.1 / Shibboleth-1.3-only IdP of the federation cannot be used.
    with pytest.raises(MetadataError) as caught:
        parse_idp_metadata(data, "https://idp.umu.se/shib13/idp/metadata.php")
    assert caught.value.reason == "NoIdPDescriptor"
    assert "SAML 2.0" in caught.value.message


def test_entra_prefers_redirect_and_ignores_ws_federation_roles() -> None:
    md = parse_idp_metadata((SHARED_FIXTURES / "entra-id-common.xml").read_bytes())
    assert md.status_dict()["ssoBinding"] == "HTTP-Redirect"
    assert md.sso_binding != POST
    # The RoleDescriptors carry the same three certificates; they are not counted twice.
    assert len(md.signing_certificates) == 3


def test_adfs_keeps_only_idp_signing_key() -> None:
    md = parse_idp_metadata((SHARED_FIXTURES / "adfs-v4.xml").read_bytes())
    assert len(md.encryption_certificates) == 1
    assert md.encryption_certificates[0].sha256 != md.signing_certificates[0].sha256
    assert "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" in md.name_id_formats


def test_sustainsys_signed_verifies_and_altered_does_not() -> None:
    signed = (SHARED_FIXTURES / "sustainsys-stubidp-signed.xml").read_bytes()
    altered = (SHARED_FIXTURES / "sustainsys-stubidp-signed-then-altered.xml").read_bytes()
    verify_metadata_signature(signed, "sha256:" + SUSTAINSYS_FP.lower())
    assert (
        parse_idp_metadata(signed, signing_fingerprint=SUSTAINSYS_FP).sso_url
        == "https://stubidp.sustainsys.com/"
    )
    with pytest.raises(MetadataError) as caught:
        verify_metadata_signature(altered, SUSTAINSYS_FP)
    assert caught.value.reason == "MetadataSignatureInvalid"
    with pytest.raises(MetadataError) as caught:
        parse_idp_metadata(altered, signing_fingerprint=SUSTAINSYS_FP)
    assert caught.value.reason == "MetadataSignatureInvalid"


@pytest.mark.parametrize(
    ("name", "fingerprint"),
    [
        (
            "entra-id-common.xml",
            "3C:B3:E2:A1:27:22:D3:E7:59:7B:D6:8D:1F:00:6E:44:75:15:E0:FA:21:C0:E4:84:59:74:7F:51:36:81:26:DD",
        ),
        (
            "adfs-v4.xml",
            "A8:A9:86:37:D4:51:36:76:8C:F8:12:76:CB:CC:CD:58:DB:BF:FB:2E:8C:75:77:1F:01:CB:16:DC:4D:2E:42:35",
        ),
    ],
)
def test_microsoft_signed_metadata_verifies(name: str, fingerprint: str) -> None:
    data = (SHARED_FIXTURES / name).read_bytes()
    verify_metadata_signature(data, fingerprint)
    with pytest.raises(MetadataError) as caught:
        verify_metadata_signature(data, SUSTAINSYS_FP)
    assert caught.value.reason == "MetadataSignatureInvalid"
    assert fingerprint in caught.value.message and SUSTAINSYS_FP in caught.value.message


@pytest.mark.parametrize("name", ["onelogin.xml", "testshib-entities.xml", "rollover-two-signing.xml"])
def test_unsigned_metadata_with_pin_is_missing_signature(name: str) -> None:
    with pytest.raises(MetadataError) as caught:
        verify_metadata_signature((SHARED_FIXTURES / name).read_bytes(), SUSTAINSYS_FP)
    assert caught.value.reason == "MetadataSignatureMissing"

"""IdP metadata in every shape real IdPs publish, plus the manual path."""

from __future__ import annotations

from datetime import UTC

import pytest

from keyplane.saml.errors import MetadataError
from keyplane.saml.metadata import IdPMetadata, manual_idp_metadata, parse_idp_metadata

from .conftest import (
    ARTIFACT,
    POST,
    REDIRECT,
    SOAP,
    IssuedCert,
    aggregate_xml,
    entity_xml,
    key_descriptor,
    make_cert,
    role_descriptors,
    sp_entity_xml,
)


def _reason(xml: str | bytes, entity_id: str | None = None, **kwargs: object) -> MetadataError:
    with pytest.raises(MetadataError) as caught:
        parse_idp_metadata(xml, entity_id, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_minimal_idp(cert: IssuedCert) -> None:
    md = parse_idp_metadata(
        entity_xml(keys=[key_descriptor(cert.der_b64)], name_id_formats=["urn:x:email", "urn:x:email"])
    )
    assert md.entity_id == "https://idp.example.com/metadata"
    assert md.sso_url == "https://idp.example.com/sso"
    assert md.sso_binding == REDIRECT
    assert md.slo_url is None and md.slo_binding is None
    assert [c.sha256 for c in md.signing_certificates] == [cert.sha256]
    assert md.name_id_formats == ("urn:x:email",)
    assert md.status_dict() == {
        "entityID": "https://idp.example.com/metadata",
        "ssoURL": "https://idp.example.com/sso",
        "ssoBinding": "HTTP-Redirect",
        "sloURL": None,
        "certificates": [md.signing_certificates[0].to_status()],
    }


def test_aggregate_with_several_idps_requires_selection(cert: IssuedCert) -> None:
    keys = [key_descriptor(cert.der_b64)]
    doc = aggregate_xml(
        entity_xml("https://a.example/idp", keys=keys, xmlns=False),
        sp_entity_xml("https://sp.example/sp", cert),
        entity_xml("https://b.example/idp", keys=keys, xmlns=False, sso=[(POST, "https://b.example/sso")]),
    )
    error = _reason(doc)
    assert error.reason == "EntitySelectionRequired"
    assert "https://a.example/idp" in error.message and "https://b.example/idp" in error.message
    assert "https://sp.example/sp" not in error.message

    chosen = parse_idp_metadata(doc, "https://b.example/idp")
    assert (chosen.entity_id, chosen.sso_url, chosen.sso_binding) == (
        "https://b.example/idp",
        "https://b.example/sso",
        POST,
    )

    missing = _reason(doc, "https://c.example/idp")
    assert missing.reason == "EntityNotFound"
    assert "https://a.example/idp" in missing.message


def test_entity_id_with_quotes_is_matched_literally(cert: IssuedCert) -> None:
    # python3-saml's parser builds XPath from the entity ID; a quote breaks it.
    odd = "urn:x:it's\"odd]"
    doc = aggregate_xml(
        entity_xml(odd, keys=[key_descriptor(cert.der_b64)], xmlns=False),
        entity_xml("urn:other", keys=[key_descriptor(cert.der_b64)], xmlns=False),
    )
    assert parse_idp_metadata(doc, odd).entity_id == odd


def test_entity_not_found_list_is_capped(cert: IssuedCert) -> None:
    entities = [
        entity_xml(f"urn:idp:{i}", keys=[key_descriptor(cert.der_b64)], xmlns=False) for i in range(40)
    ]
    error = _reason(aggregate_xml(*entities), "urn:nope")
    assert error.reason == "EntityNotFound"
    assert "urn:idp:0" in error.message and "urn:idp:39" not in error.message
    assert "and 30 more" in error.message
    assert len(error.message) < 600


def test_single_idp_among_sps_is_chosen_automatically(cert: IssuedCert) -> None:
    doc = aggregate_xml(
        sp_entity_xml("https://sp1.example/sp", cert),
        entity_xml("https://idp.example/idp", keys=[key_descriptor(cert.der_b64)], xmlns=False),
        sp_entity_xml("https://sp2.example/sp", cert),
    )
    assert parse_idp_metadata(doc).entity_id == "https://idp.example/idp"


def test_nested_aggregates_are_searched(cert: IssuedCert) -> None:
    inner = aggregate_xml(entity_xml("urn:deep", keys=[key_descriptor(cert.der_b64)], xmlns=False))
    doc = aggregate_xml(sp_entity_xml("urn:sp", cert), inner)
    assert parse_idp_metadata(doc).entity_id == "urn:deep"


def test_duplicate_entity_id_is_refused(cert: IssuedCert) -> None:
    one = entity_xml("urn:dup", keys=[key_descriptor(cert.der_b64)], xmlns=False)
    assert _reason(aggregate_xml(one, one), "urn:dup").reason == "MetadataMalformed"


def test_entra_like_role_descriptors_and_sp_before_idp(cert: IssuedCert, other_cert: IssuedCert) -> None:
    sp_descriptor = (
        '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        + key_descriptor(other_cert.der_b64)
        + '<md:AssertionConsumerService Binding="'
        + POST
        + '" Location="https://x/acs" index="0"/>'
        + "</md:SPSSODescriptor>"
    )
    doc = entity_xml(
        "https://sts.windows.net/tenant/",
        before_idp=role_descriptors(other_cert) + sp_descriptor,
        keys=[key_descriptor(cert.der_b64)],
        sso=[(REDIRECT, "https://login.example/saml2"), (POST, "https://login.example/saml2")],
        slo=[(REDIRECT, "https://login.example/saml2")],
    )
    md = parse_idp_metadata(doc)
    # Certificates of the RoleDescriptors and of the SP role are not the IdP's signing keys.
    assert [c.sha256 for c in md.signing_certificates] == [cert.sha256]
    assert md.slo_url == "https://login.example/saml2"
    assert md.slo_binding == REDIRECT


def test_rollover_two_signing_certs_kept_in_order_and_deduped(
    cert: IssuedCert, other_cert: IssuedCert
) -> None:
    doc = entity_xml(
        keys=[
            key_descriptor(cert.der_b64),
            key_descriptor(other_cert.der_b64, wrap=64),
            key_descriptor(cert.der_b64, wrap=76),  # same cert again, folded differently
            key_descriptor(other_cert.der_b64, use="encryption"),
        ]
    )
    md = parse_idp_metadata(doc)
    assert [c.sha256 for c in md.signing_certificates] == [cert.sha256, other_cert.sha256]
    assert [c.sha256 for c in md.encryption_certificates] == [other_cert.sha256]


def test_key_descriptor_without_use_counts_as_signing(cert: IssuedCert) -> None:
    md = parse_idp_metadata(entity_xml(keys=[key_descriptor(cert.der_b64, use=None)]))
    assert [c.sha256 for c in md.signing_certificates] == [cert.sha256]
    assert [c.sha256 for c in md.encryption_certificates] == [cert.sha256]


def test_encryption_only_key_is_not_a_signing_key(cert: IssuedCert) -> None:
    error = _reason(entity_xml(keys=[key_descriptor(cert.der_b64, use="encryption")]))
    assert error.reason == "NoSigningCertificate"


def test_broken_encryption_key_is_ignored_but_broken_signing_key_is_not(cert: IssuedCert) -> None:
    md = parse_idp_metadata(
        entity_xml(keys=[key_descriptor(cert.der_b64), key_descriptor("QUJD", use="encryption")])
    )
    assert md.encryption_certificates == ()
    error = _reason(entity_xml(keys=[key_descriptor("bm90IGEgY2VydA==")]))
    assert error.reason == "CertificateInvalid"
    assert "KeyDescriptor #1" in error.message


@pytest.mark.parametrize(
    ("services", "expected"),
    [
        (
            [(SOAP, "https://i/soap"), (POST, "https://i/post"), (REDIRECT, "https://i/redirect")],
            (REDIRECT, "https://i/redirect"),
        ),
        ([(ARTIFACT, "https://i/art"), (POST, "https://i/post")], (POST, "https://i/post")),
        ([(POST, "https://i/post1"), (POST, "https://i/post2")], (POST, "https://i/post1")),
        ([(REDIRECT, ""), (POST, "https://i/post")], (POST, "https://i/post")),
    ],
)
def test_sso_binding_preference(
    cert: IssuedCert, services: list[tuple[str, str]], expected: tuple[str, str]
) -> None:
    md = parse_idp_metadata(entity_xml(keys=[key_descriptor(cert.der_b64)], sso=services))
    assert (md.sso_binding, md.sso_url) == expected


def test_only_soap_or_artifact_sso_is_no_sso_service(cert: IssuedCert) -> None:
    error = _reason(
        entity_xml(
            keys=[key_descriptor(cert.der_b64)], sso=[(SOAP, "https://i/s"), (ARTIFACT, "https://i/a")]
        )
    )
    assert error.reason == "NoSSOService"
    assert SOAP in error.message
    assert _reason(entity_xml(keys=[key_descriptor(cert.der_b64)], sso=[])).reason == "NoSSOService"


def test_no_idp_descriptor(cert: IssuedCert) -> None:
    error = _reason(entity_xml(idp=False))
    assert error.reason == "NoIdPDescriptor"
    assert _reason(aggregate_xml(sp_entity_xml("urn:sp", cert))).reason == "NoIdPDescriptor"
    # Naming an entity that is only an SP.
    assert _reason(aggregate_xml(sp_entity_xml("urn:sp", cert)), "urn:sp").reason == "NoIdPDescriptor"


def test_saml1_only_idp_is_refused(cert: IssuedCert) -> None:
    error = _reason(
        entity_xml(keys=[key_descriptor(cert.der_b64)], protocol="urn:oasis:names:tc:SAML:1.1:protocol")
    )
    assert error.reason == "NoIdPDescriptor"
    assert "SAML:1.1" in error.message


def test_wrong_root_is_explained() -> None:
    html = _reason("<html><body>Sign in</body></html>")
    assert html.reason == "NoIdPDescriptor" and "HTML" in html.message
    wrong_ns = _reason('<EntityDescriptor entityID="x"/>')
    assert wrong_ns.reason == "NoIdPDescriptor" and "namespace" in wrong_ns.message


def test_http_sso_url(cert: IssuedCert) -> None:
    doc = entity_xml(keys=[key_descriptor(cert.der_b64)], sso=[(REDIRECT, "http://localhost:8080/sso")])
    error = _reason(doc)
    assert error.reason == "SSOURLNotHTTPS"
    assert "http://localhost:8080/sso" in error.message
    assert parse_idp_metadata(doc, allow_http=True).sso_url == "http://localhost:8080/sso"


@pytest.mark.parametrize(
    "url", ["ftp://idp/sso", "/relative/sso", "https://", "javascript:alert(1)", "https://a b/"]
)
def test_unusable_sso_urls(cert: IssuedCert, url: str) -> None:
    error = _reason(entity_xml(keys=[key_descriptor(cert.der_b64)], sso=[(REDIRECT, url)]), allow_http=True)
    assert error.reason == "SSOURLNotHTTPS"


def test_http_slo_url_is_refused_too(cert: IssuedCert) -> None:
    doc = entity_xml(keys=[key_descriptor(cert.der_b64)], slo=[(REDIRECT, "http://idp.example/slo")])
    assert _reason(doc).reason == "SSOURLNotHTTPS"


def test_non_pem_cert_in_metadata(cert: IssuedCert) -> None:
    assert _reason(entity_xml(keys=[key_descriptor("!!! not base64 !!!")])).reason == "CertificateInvalid"


def test_missing_entity_id(cert: IssuedCert) -> None:
    doc = entity_xml("", keys=[key_descriptor(cert.der_b64)])
    assert _reason(doc).reason == "MetadataMalformed"


def test_comment_cannot_truncate_values(cert: IssuedCert) -> None:
    folded = cert.der_b64[:100] + "<!-- comment -->" + cert.der_b64[100:]
    md = parse_idp_metadata(entity_xml(keys=[key_descriptor(folded)], name_id_formats=["urn:a<!--x-->b"]))
    assert md.signing_certificates[0].sha256 == cert.sha256
    assert md.name_id_formats == ("urn:ab",)


def test_malformed_and_forbidden(cert: IssuedCert) -> None:
    assert _reason("<md:EntityDescriptor").reason == "MetadataMalformed"
    doc = '<!DOCTYPE x [<!ENTITY e "boom">]>' + entity_xml(keys=[key_descriptor(cert.der_b64)])
    assert _reason(doc).reason == "MetadataForbiddenXML"
    assert (
        _reason(entity_xml(keys=[key_descriptor(cert.der_b64)]), max_bytes=100).reason == "MetadataTooLarge"
    )


def test_manual_path(cert: IssuedCert, other_cert: IssuedCert) -> None:
    md = manual_idp_metadata(
        "http://www.okta.com/exk1",
        "https://acme.okta.com/app/exk1/sso/saml",
        "HTTP-POST",
        "",
        [cert.cert_pem, other_cert.der_b64, cert.cert_pem],
    )
    assert isinstance(md, IdPMetadata)
    assert md.sso_binding == POST
    assert md.slo_url is None
    assert [c.sha256 for c in md.signing_certificates] == [cert.sha256, other_cert.sha256]
    assert md.status_dict()["ssoBinding"] == "HTTP-POST"
    with_slo = manual_idp_metadata(
        "urn:x", "https://i/sso", "HTTP-Redirect", "https://i/slo", [cert.cert_pem]
    )
    assert (with_slo.slo_url, with_slo.slo_binding) == ("https://i/slo", REDIRECT)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("", "https://i/sso", "HTTP-Redirect", None, "CERT"), "MetadataMalformed"),
        (("urn:x", "http://i/sso", "HTTP-Redirect", None, "CERT"), "SSOURLNotHTTPS"),
        (("urn:x", "https://i/sso", "SOAP", None, "CERT"), "NoSSOService"),
        (("urn:x", "https://i/sso", "HTTP-Redirect", "http://i/slo", "CERT"), "SSOURLNotHTTPS"),
        (("urn:x", "https://i/sso", "HTTP-Redirect", None, "junk"), "CertificateInvalid"),
        (("urn:x", "https://i/sso", "HTTP-Redirect", None, None), "NoSigningCertificate"),
    ],
)
def test_manual_path_validation(
    cert: IssuedCert, args: tuple[str, str, str, str | None, str | None], reason: str
) -> None:
    entity_id, sso, binding, slo, certificate = args
    certs = [] if certificate is None else [cert.cert_pem if certificate == "CERT" else certificate]
    with pytest.raises(MetadataError) as caught:
        manual_idp_metadata(entity_id, sso, binding, slo, certs)
    assert caught.value.reason == reason
    if reason == "CertificateInvalid":
        assert "manual.certificates[0]" in caught.value.message


def test_manual_allows_http_when_asked(cert: IssuedCert) -> None:
    md = manual_idp_metadata(
        "urn:x", "http://keycloak:8080/sso", "HTTP-Redirect", None, [cert.cert_pem], allow_http=True
    )
    assert md.sso_url == "http://keycloak:8080/sso"


def test_expired_metadata_cert_still_parses() -> None:
    # Parsing reports facts; judging validity is evaluate_certificates' job.
    from datetime import datetime

    old = make_cert(
        not_before=datetime(2000, 1, 1, tzinfo=UTC),
        not_after=datetime(2001, 1, 1, tzinfo=UTC),
    )
    md = parse_idp_metadata(entity_xml(keys=[key_descriptor(old.der_b64)]))
    assert md.signing_certificates[0].not_after.year == 2001


def test_valid_until_of_the_entity_and_its_aggregate(cert: IssuedCert) -> None:
    from datetime import datetime

    entity = entity_xml(keys=[key_descriptor(cert.der_b64)]).replace(
        "<md:EntityDescriptor ", '<md:EntityDescriptor validUntil="2027-01-01T00:00:00.123Z" ', 1
    )
    aggregate = aggregate_xml(entity).replace(
        "<md:EntitiesDescriptor ", '<md:EntitiesDescriptor validUntil="2026-12-20T00:00:00Z" ', 1
    )
    before = datetime(2026, 12, 19, tzinfo=UTC)
    assert parse_idp_metadata(entity, now=before).valid_until == datetime(2027, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert parse_idp_metadata(aggregate, now=before).valid_until == datetime(2026, 12, 20, tzinfo=UTC)
    expired = _reason(aggregate, now=datetime(2026, 12, 20, 0, 0, 1, tzinfo=UTC))
    assert expired.reason == "MetadataExpired" and "2026-12-20T00:00:00Z" in expired.message
    assert parse_idp_metadata(aggregate).valid_until is not None  # without now, nothing is refused
    bad = _reason(entity.replace("2027-01-01T00:00:00.123Z", "next tuesday"), now=before)
    assert bad.reason == "MetadataMalformed" and "validUntil" in bad.message


def test_a_document_read_again_is_judged_by_every_argument_of_the_call(cert: IssuedCert) -> None:
    # Parses are remembered per document: what the call asks (entity, signature, HTTP, size, time) still decides.
    from datetime import datetime

    aggregate = aggregate_xml(
        entity_xml("https://a.example.com/idp", keys=[key_descriptor(cert.der_b64)],
                   sso=((REDIRECT, "https://a.example.com/sso"),)),
        entity_xml("https://b.example.com/idp", keys=[key_descriptor(cert.der_b64)],
                   sso=((REDIRECT, "http://b.example.com/sso"),)),
    ).replace("<md:EntitiesDescriptor ", '<md:EntitiesDescriptor validUntil="2026-12-20T00:00:00Z" ', 1)
    before, after = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 21, tzinfo=UTC)
    assert parse_idp_metadata(aggregate, "https://a.example.com/idp", now=before).sso_url == "https://a.example.com/sso"
    assert parse_idp_metadata(aggregate, "https://b.example.com/idp", allow_http=True,
                              now=before).sso_url == "http://b.example.com/sso"
    assert _reason(aggregate, "https://b.example.com/idp", now=before).reason == "SSOURLNotHTTPS"
    assert _reason(aggregate, "https://a.example.com/idp", now=after).reason == "MetadataExpired"
    assert _reason(aggregate, "https://a.example.com/idp", signing_fingerprint=cert.sha256).reason != ""
    assert _reason(aggregate, "https://a.example.com/idp", max_bytes=100).reason != ""
    assert _reason(aggregate.encode(), "https://a.example.com/idp", now=after).reason == "MetadataExpired"


def test_a_text_and_its_utf8_bytes_are_different_documents(cert: IssuedCert) -> None:
    # A str was decoded already, so its declaration no longer applies; bytes are decoded as they declare.
    text = '<?xml version="1.0" encoding="ISO-8859-1"?>' + entity_xml(
        "https://idp.example.com/é", keys=[key_descriptor(cert.der_b64)])
    assert parse_idp_metadata(text).entity_id == "https://idp.example.com/é"
    assert parse_idp_metadata(text.encode()).entity_id == "https://idp.example.com/Ã©"
    assert _reason("<a>\ud800</a>").reason == "MetadataMalformed"  # a lone surrogate: refused, not a crash

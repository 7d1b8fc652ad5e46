"""Metadata signatures: pinned certificate, tampering, and signature wrapping."""

from __future__ import annotations

import pytest
from lxml import etree

from keyplane.saml.errors import MetadataError
from keyplane.saml.metadata import parse_idp_metadata
from keyplane.saml.signature import verify_metadata_signature

from .conftest import DS, MD, IssuedCert, aggregate_xml, entity_xml, key_descriptor, sign_xml, sp_entity_xml


def _signed_entity(signer: IssuedCert, idp_cert: IssuedCert) -> bytes:
    return sign_xml(entity_xml(keys=[key_descriptor(idp_cert.der_b64)], element_id="_md1"), signer, "_md1")


def _error(xml: bytes | str, fingerprint: str, entity_id: str | None = None) -> MetadataError:
    with pytest.raises(MetadataError) as caught:
        verify_metadata_signature(xml, fingerprint, entity_id)
    return caught.value


def test_right_fingerprint_verifies(cert: IssuedCert) -> None:
    doc = _signed_entity(cert, cert)
    verify_metadata_signature(doc, cert.sha256)
    verify_metadata_signature(doc.decode(), "sha256:" + cert.sha256.replace(":", "").lower())
    md = parse_idp_metadata(doc, signing_fingerprint=cert.sha256)
    assert md.entity_id == "https://idp.example.com/metadata"


def test_wrong_fingerprint_names_both(cert: IssuedCert, other_cert: IssuedCert) -> None:
    error = _error(_signed_entity(cert, cert), other_cert.sha256)
    assert error.reason == "MetadataSignatureInvalid"
    assert cert.sha256 in error.message and other_cert.sha256 in error.message


def test_malformed_fingerprint_is_invalid(cert: IssuedCert) -> None:
    assert _error(_signed_entity(cert, cert), "sha256:ABCD").reason == "MetadataSignatureInvalid"


def test_altered_after_signing_fails(cert: IssuedCert) -> None:
    doc = _signed_entity(cert, cert)
    altered = doc.replace(b"https://idp.example.com/sso", b"https://evil.example.com/sso")
    assert altered != doc
    assert _error(altered, cert.sha256).reason == "MetadataSignatureInvalid"
    with pytest.raises(MetadataError):
        parse_idp_metadata(altered, signing_fingerprint=cert.sha256)
    # Without a pin the same document parses: the pin is what protects it.
    assert parse_idp_metadata(altered).sso_url == "https://evil.example.com/sso"


def test_swapped_embedded_certificate_does_not_help(cert: IssuedCert, other_cert: IssuedCert) -> None:
    """An attacker signs with their key but embeds the pinned certificate: the key check fails."""
    doc = sign_xml(entity_xml(keys=[key_descriptor(cert.der_b64)], element_id="_md1"), other_cert, "_md1")
    forged = doc.replace(other_cert.der_b64.encode(), cert.der_b64.encode())
    assert _error(forged, cert.sha256).reason == "MetadataSignatureInvalid"


def test_unsigned_is_missing(cert: IssuedCert) -> None:
    error = _error(entity_xml(keys=[key_descriptor(cert.der_b64)]), cert.sha256)
    assert error.reason == "MetadataSignatureMissing"
    assert cert.sha256 in error.message


def test_whole_document_reference_on_root(cert: IssuedCert) -> None:
    doc = sign_xml(entity_xml(keys=[key_descriptor(cert.der_b64)]), cert, uri="")
    verify_metadata_signature(doc, cert.sha256)


def test_pretty_printed_after_signing_still_verifies(cert: IssuedCert) -> None:
    """What .NET signers publish: signed without whitespace, indented afterwards."""
    doc = sign_xml(
        entity_xml(keys=[key_descriptor(cert.der_b64)], element_id="_md1"), cert, "_md1", compact=True
    )
    pretty = etree.tostring(etree.fromstring(doc), pretty_print=True)
    assert pretty.count(b"\n") > doc.count(b"\n") + 5
    verify_metadata_signature(pretty, cert.sha256)
    altered = pretty.replace(b"https://idp.example.com/sso", b"https://evil.example.com/sso")
    assert _error(altered, cert.sha256).reason == "MetadataSignatureInvalid"


def test_aggregate_signed_at_root(cert: IssuedCert) -> None:
    doc = aggregate_xml(
        entity_xml("urn:a", keys=[key_descriptor(cert.der_b64)], xmlns=False),
        entity_xml("urn:b", keys=[key_descriptor(cert.der_b64)], xmlns=False),
        element_id="_agg",
    )
    signed = sign_xml(doc, cert, "_agg")
    verify_metadata_signature(signed, cert.sha256, "urn:b")
    assert parse_idp_metadata(signed, "urn:b", signing_fingerprint=cert.sha256).entity_id == "urn:b"
    altered = signed.replace(b'entityID="urn:a"', b'entityID="urn:z"')
    assert _error(altered, cert.sha256, "urn:b").reason == "MetadataSignatureInvalid"


def test_selected_entity_signed_inside_unsigned_aggregate(cert: IssuedCert, other_cert: IssuedCert) -> None:
    signed_entity = _signed_entity(cert, cert).decode()
    doc = aggregate_xml(sp_entity_xml("urn:sp", other_cert), signed_entity)
    verify_metadata_signature(doc, cert.sha256)
    md = parse_idp_metadata(doc, signing_fingerprint=cert.sha256)
    assert md.entity_id == "https://idp.example.com/metadata"
    # Another, unsigned IdP in the same aggregate is not vouched for by that signature.
    doc2 = aggregate_xml(
        signed_entity, entity_xml("urn:other", keys=[key_descriptor(cert.der_b64)], xmlns=False)
    )
    assert _error(doc2, cert.sha256, "urn:other").reason == "MetadataSignatureMissing"


def test_signature_wrapping_is_refused(cert: IssuedCert, other_cert: IssuedCert) -> None:
    """The genuine signed entity is tucked away; an evil root carries its signature."""
    genuine = etree.fromstring(_signed_entity(cert, cert))
    signature = genuine.find(f"{{{DS}}}Signature")
    evil = etree.fromstring(
        entity_xml(
            keys=[key_descriptor(other_cert.der_b64)],
            sso=[("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect", "https://evil.example/sso")],
        )
    )
    genuine.remove(signature)
    evil.insert(0, signature)
    extensions = etree.SubElement(evil, f"{{{MD}}}Extensions")
    extensions.append(genuine)
    evil.append(extensions)
    wrapped = etree.tostring(evil)
    error = _error(wrapped, cert.sha256)
    assert error.reason == "MetadataSignatureInvalid"
    assert "#_md1" in error.message
    with pytest.raises(MetadataError):
        parse_idp_metadata(wrapped, signing_fingerprint=cert.sha256)


def test_reference_to_another_element_is_refused(cert: IssuedCert) -> None:
    doc = entity_xml(keys=[key_descriptor(cert.der_b64)], element_id="_root").replace(
        "<md:IDPSSODescriptor", '<md:IDPSSODescriptor ID="_inner"', 1
    )
    # Sign the IDPSSODescriptor but put the signature on the root.
    signed = etree.fromstring(sign_xml(doc, cert, "_inner"))
    inner_sig = signed.find(f".//{{{DS}}}Signature")
    inner_sig.getparent().remove(inner_sig)
    signed.insert(0, inner_sig)
    assert _error(etree.tostring(signed), cert.sha256).reason == "MetadataSignatureInvalid"


def test_duplicate_ids_are_refused(cert: IssuedCert) -> None:
    signed = etree.fromstring(_signed_entity(cert, cert))
    extensions = etree.Element(f"{{{MD}}}Extensions")
    etree.SubElement(extensions, "decoy", ID="_md1")
    signed.insert(1, extensions)
    error = _error(etree.tostring(signed), cert.sha256)
    assert error.reason == "MetadataSignatureInvalid"


def test_two_signatures_are_refused(cert: IssuedCert) -> None:
    signed = etree.fromstring(_signed_entity(cert, cert))
    signed.insert(1, etree.fromstring(etree.tostring(signed.find(f"{{{DS}}}Signature"))))
    assert _error(etree.tostring(signed), cert.sha256).reason == "MetadataSignatureInvalid"


def test_forbidden_xml_is_refused_before_verification(cert: IssuedCert) -> None:
    doc = b'<!DOCTYPE x [<!ENTITY e "e">]>' + _signed_entity(cert, cert)
    assert _error(doc, cert.sha256).reason == "MetadataForbiddenXML"

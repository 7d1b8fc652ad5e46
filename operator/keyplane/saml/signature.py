"""Verifying that IdP metadata is signed by a pinned certificate (enveloped XML-DSig)."""

from __future__ import annotations

import base64
import binascii
from copy import deepcopy

import xmlsec
from lxml import etree

from keyplane.saml.certificates import CertificateInfo, certificate_from_der, normalize_fingerprint
from keyplane.saml.entities import NS_DS, select_entity
from keyplane.saml.errors import MetadataError, capped_list
from keyplane.saml.safexml import DEFAULT_MAX_BYTES, parse_xml, string_value

_NS = {"ds": NS_DS}
_SIGNATURE = f"{{{NS_DS}}}Signature"

# Only what enveloped metadata signatures use. Everything else (XPath, XSLT, XPointer
# transforms, HMAC) is refused by xmlsec, which closes transform-based tricks.
_C14N = (
    xmlsec.constants.TransformExclC14N,
    xmlsec.constants.TransformExclC14NWithComments,
    xmlsec.constants.TransformInclC14N,
    xmlsec.constants.TransformInclC14NWithComments,
    xmlsec.constants.TransformInclC14N11,
    xmlsec.constants.TransformInclC14N11WithComments,
)
_SIGNATURE_METHODS = (
    xmlsec.constants.TransformRsaSha1,
    xmlsec.constants.TransformRsaSha256,
    xmlsec.constants.TransformRsaSha384,
    xmlsec.constants.TransformRsaSha512,
    xmlsec.constants.TransformEcdsaSha256,
    xmlsec.constants.TransformEcdsaSha384,
    xmlsec.constants.TransformEcdsaSha512,
)
_DIGESTS = (
    xmlsec.constants.TransformSha1,
    xmlsec.constants.TransformSha256,
    xmlsec.constants.TransformSha384,
    xmlsec.constants.TransformSha512,
)


def _invalid(message: str) -> MetadataError:
    return MetadataError("MetadataSignatureInvalid", message)


def _signature_of(element: etree._Element) -> etree._Element | None:
    signatures = element.findall(_SIGNATURE)
    if len(signatures) > 1:
        raise _invalid("the signed element carries more than one Signature; refusing an ambiguous document")
    return signatures[0] if signatures else None


def _check_reference(signed: etree._Element, signature: etree._Element) -> None:
    """The single Reference must point at the element that envelops the signature.

    This is the guard against signature wrapping: a valid signature over some other element
    (moved elsewhere in the document) must not vouch for the element that is then read.
    """
    references = signature.findall("ds:SignedInfo/ds:Reference", _NS)
    if len(references) != 1:
        raise _invalid(f"the signature has {len(references)} References; exactly one is expected")
    uri = references[0].get("URI")
    element_id = signed.get("ID")
    is_root = signed.getparent() is None
    if uri == "" and is_root:
        return
    if uri is None or not uri.startswith("#") or not element_id or uri[1:] != element_id:
        raise _invalid(
            f"the signature references {uri!r}, not the element it is enveloped in "
            f"(ID {element_id!r}); refusing a possibly wrapped document"
        )
    same_id = signed.getroottree().getroot().xpath("//*[@ID=$id]", id=element_id)
    if len(same_id) != 1:
        raise _invalid(f"the ID {element_id!r} appears {len(same_id)} times; IDs must be unique")


def _embedded_certificates(signature: etree._Element) -> list[CertificateInfo]:
    found: list[CertificateInfo] = []
    for node in signature.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _NS):
        text = "".join(string_value(node).split())
        try:
            found.append(certificate_from_der(base64.b64decode(text, validate=True)))
        except (binascii.Error, ValueError, MetadataError):
            continue
    return found


def verify_tree_signature(root: etree._Element, entity: etree._Element, expected_fingerprint: str) -> None:
    """Verify the signature that covers `entity`: the root's if it has one, else the entity's own."""
    try:
        expected = normalize_fingerprint(expected_fingerprint)
    except ValueError as exc:
        raise _invalid(f"signingCertificateFingerprint is not a SHA-256 fingerprint: {exc}") from None

    signed = root
    signature = _signature_of(root)
    if signature is None and entity is not root:
        signed, signature = entity, _signature_of(entity)
    if signature is None:
        raise MetadataError(
            "MetadataSignatureMissing",
            f"the metadata is not signed, but signingCertificateFingerprint {expected} requires a "
            "signature; use the IdP's signed metadata or remove the fingerprint",
        )
    _check_reference(signed, signature)

    embedded = _embedded_certificates(signature)
    cert = next((c for c in embedded if c.sha256 == expected), None)
    if cert is None:
        found = capped_list([c.sha256 for c in embedded], 3) or "no X509Certificate"
        raise _invalid(
            f"the metadata is signed by {found}, expected {expected}; if the IdP rolled its "
            "metadata signing key over, update signingCertificateFingerprint"
        )

    if _verifies(signed, signature, cert):
        return
    # .NET signers (Sustainsys, some ADFS setups) sign a whitespace-stripped DOM and then
    # pretty-print. Whitespace-only text between elements carries no meaning in metadata (every
    # value Keyplane reads is stripped), so a second attempt without it verifies the same content.
    copy = _without_blank_text(root)
    if _verifies(_same_node(copy, signed), _same_node(copy, signature), cert):
        return
    raise _invalid(
        f"the metadata signature by {expected} does not verify: the document was changed after "
        "signing, or uses an unsupported algorithm"
    )


def _without_blank_text(root: etree._Element) -> etree._Element:
    copy = deepcopy(root)
    for element in copy.iter():
        if element.text is not None and not element.text.strip() and len(element):
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    return copy


def _same_node(copy_root: etree._Element, original: etree._Element) -> etree._Element:
    """The node of a deep copy at the same position as `original` in its tree."""
    positions: list[int] = []
    node = original
    while (parent := node.getparent()) is not None:
        positions.append(parent.index(node))
        node = parent
    found = copy_root
    for position in reversed(positions):
        found = found[position]
    return found


def _verifies(signed: etree._Element, signature: etree._Element, cert: CertificateInfo) -> bool:
    ctx = xmlsec.SignatureContext()
    for transform in (*_C14N, *_SIGNATURE_METHODS):
        ctx.enable_signature_transform(transform)
    for transform in (xmlsec.constants.TransformEnveloped, *_C14N, *_DIGESTS):
        ctx.enable_reference_transform(transform)
    try:
        ctx.key = xmlsec.Key.from_memory(cert.pem().encode("ascii"), xmlsec.constants.KeyDataFormatCertPem)
        if signed.get("ID"):
            ctx.register_id(signed, "ID")
        ctx.verify(signature)
    except xmlsec.Error:
        return False
    return True


def verify_metadata_signature(
    xml: bytes | str,
    expected_fingerprint: str,
    entity_id: str | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> None:
    """Require an enveloped signature by the certificate with `expected_fingerprint`.

    The signature must be on the document root or, when the root is unsigned, on the selected
    EntityDescriptor (same selection as parse_idp_metadata). Prefer
    `parse_idp_metadata(..., signing_fingerprint=...)`, which verifies and reads one tree.
    """
    root = parse_xml(xml, max_bytes=max_bytes)
    entity = select_entity(root, entity_id)
    verify_tree_signature(root, entity, expected_fingerprint)

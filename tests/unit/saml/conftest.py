"""Test-time certificates, metadata builders and an XML signer (nothing is read from disk)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
SOAP = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"
ARTIFACT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"
SAML2 = "urn:oasis:names:tc:SAML:2.0:protocol"
# The real IdP documents live beside the repository, not in it.
SHARED_FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "idp-metadata"


@dataclass(frozen=True)
class IssuedCert:
    cert_pem: str
    key_pem: str
    der_b64: str
    sha256: str


_KEYS: list[rsa.RSAPrivateKey] = []


def _key(index: int) -> rsa.RSAPrivateKey:
    # Key generation is the slow part: two keys serve the whole session.
    while len(_KEYS) <= index:
        _KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _KEYS[index]


def make_cert(
    cn: str = "idp.example.com",
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=365),
    key_index: int = 0,
) -> IssuedCert:
    key = _key(key_index)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return IssuedCert(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        der_b64=base64.b64encode(der).decode(),
        sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
    )


@pytest.fixture(scope="session")
def cert() -> IssuedCert:
    return make_cert()


@pytest.fixture(scope="session")
def other_cert() -> IssuedCert:
    return make_cert(cn="other.example.com", key_index=1)


def key_descriptor(der_b64: str, use: str | None = "signing", wrap: int = 0) -> str:
    body = der_b64
    if wrap:  # metadata often folds the base64 over several indented lines
        body = "\n".join("      " + der_b64[i : i + wrap] for i in range(0, len(der_b64), wrap)) + "\n"
    use_attr = f' use="{use}"' if use else ""
    return (
        f"<md:KeyDescriptor{use_attr}><ds:KeyInfo><ds:X509Data>"
        f"<ds:X509Certificate>{body}</ds:X509Certificate>"
        f"</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
    )


def entity_xml(
    entity_id: str = "https://idp.example.com/metadata",
    *,
    keys: Sequence[str] = (),
    sso: Sequence[tuple[str, str]] = ((REDIRECT, "https://idp.example.com/sso"),),
    slo: Sequence[tuple[str, str]] = (),
    idp: bool = True,
    protocol: str = SAML2,
    before_idp: str = "",
    name_id_formats: Sequence[str] = (),
    element_id: str | None = None,
    xmlns: bool = True,
) -> str:
    """One EntityDescriptor; `keys` are key_descriptor() strings."""
    ns = f' xmlns:md="{MD}" xmlns:ds="{DS}"' if xmlns else ""
    id_attr = f' ID="{element_id}"' if element_id else ""
    inner = before_idp
    if idp:
        inner += (
            f'<md:IDPSSODescriptor protocolSupportEnumeration="{protocol}">'
            + "".join(keys)
            + "".join(
                f"<md:SingleLogoutService Binding={quoteattr(b)} Location={quoteattr(u)}/>" for b, u in slo
            )
            + "".join(f"<md:NameIDFormat>{f}</md:NameIDFormat>" for f in name_id_formats)
            + "".join(
                f"<md:SingleSignOnService Binding={quoteattr(b)} Location={quoteattr(u)}/>" for b, u in sso
            )
            + "</md:IDPSSODescriptor>"
        )
    return f"<md:EntityDescriptor{ns}{id_attr} entityID={quoteattr(entity_id)}>{inner}</md:EntityDescriptor>"


def sp_entity_xml(entity_id: str, cert: IssuedCert) -> str:
    return entity_xml(
        entity_id,
        idp=False,
        xmlns=False,
        before_idp=(
            f'<md:SPSSODescriptor protocolSupportEnumeration="{SAML2}">'
            + key_descriptor(cert.der_b64)
            + f'<md:AssertionConsumerService Binding="{POST}" '
            + 'Location="https://sp.example.com/acs" index="1"/>'
            + "</md:SPSSODescriptor>"
        ),
    )


def aggregate_xml(*entities: str, element_id: str | None = None) -> str:
    id_attr = f' ID="{element_id}"' if element_id else ""
    return (
        f'<md:EntitiesDescriptor xmlns:md="{MD}" xmlns:ds="{DS}"{id_attr} Name="urn:example:federation">'
        + "".join(entities)
        + "</md:EntitiesDescriptor>"
    )


def role_descriptors(cert: IssuedCert) -> str:
    """What Entra ID and ADFS put before their IDPSSODescriptor (WS-Federation roles)."""
    fed = "http://docs.oasis-open.org/wsfed/federation/200706"
    return "".join(
        f'<md:RoleDescriptor xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:fed="{fed}" '
        f'xsi:type="fed:{kind}" protocolSupportEnumeration="{fed}">'
        + key_descriptor(cert.der_b64)
        + "</md:RoleDescriptor>"
        for kind in ("SecurityTokenServiceType", "ApplicationServiceType")
    )


def sign_xml(
    xml: str | bytes,
    signer: IssuedCert,
    element_id: str | None = None,
    *,
    uri: str | None = None,
    compact: bool = False,
) -> bytes:
    """Enveloped-sign the element with `element_id` (or the root) the way IdPs do."""
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    target = root if element_id is None else root.xpath("//*[@ID=$id]", id=element_id)[0]
    target_id = target.get("ID")
    reference_uri = uri if uri is not None else (f"#{target_id}" if target_id else "")
    signature = xmlsec.template.create(
        target, xmlsec.constants.TransformExclC14N, xmlsec.constants.TransformRsaSha256, ns="ds"
    )
    target.insert(0, signature)
    reference = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256, uri=reference_uri)
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformExclC14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    if compact:  # like .NET: no whitespace-only text anywhere, signature template included
        for element in root.iter():
            if element.text is not None and not element.text.strip():
                element.text = None
            if element.tail is not None and not element.tail.strip():
                element.tail = None
    key = xmlsec.Key.from_memory(signer.key_pem.encode(), xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_memory(signer.cert_pem.encode(), xmlsec.constants.KeyDataFormatCertPem)
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    if target_id:
        ctx.register_id(target, "ID")
    ctx.sign(signature)
    return etree.tostring(root)

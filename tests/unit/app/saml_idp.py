"""A hand-written SAML IdP: a key and certificate made with cryptography, Responses signed with xmlsec.

Only for what a real IdP will not produce: replayed, tampered, wrongly addressed, SHA-1-signed,
unsolicited-with-InResponseTo and oversized responses, built field by field. The happy paths (signed
assertion / response / both, encryption, IdP-initiated login, single logout) run against real
pysaml2 in tests/peers/.
"""

from __future__ import annotations

import base64
import datetime
import uuid
import zlib
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"


@dataclass
class KeyPair:
    key_pem: bytes
    cert_pem: bytes

    @property
    def cert_body(self) -> str:
        return "".join(self.cert_pem.decode().strip().splitlines()[1:-1])


def make_keypair(common_name: str = "test-idp") -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return KeyPair(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        cert.public_bytes(serialization.Encoding.PEM),
    )


IDP_ENTITY = "https://idp.test/exk1"
IDP_SSO = "https://idp.test/sso/saml"
SP_ENTITY = "https://app.example.com/sso/saml/okta"
ACS = "https://app.example.com/sso/saml/okta/acs"


def saml_settings(idp: KeyPair) -> dict[str, object]:
    return {
        "strict": True,
        "debug": False,
        "sp": {
            "entityId": SP_ENTITY,
            "assertionConsumerService": {
                "url": ACS,
                "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
            },
            "NameIDFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            "x509cert": "",
            "privateKey": "",
        },
        "idp": {
            "entityId": IDP_ENTITY,
            "singleSignOnService": {
                "url": IDP_SSO,
                "binding": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
            },
            "x509cert": idp.cert_body,
        },
        "security": {
            "authnRequestsSigned": False,
            "wantAssertionsSigned": True,
            "rejectUnsolicitedResponsesWithInResponseTo": True,
            "signatureAlgorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "digestAlgorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
        },
    }


def request_id_of(redirect_url: str) -> str:
    """The ID of the AuthnRequest in an HTTP-Redirect binding URL (what the IdP reads)."""
    encoded = parse_qs(urlsplit(redirect_url).query)["SAMLRequest"][0]
    xml = zlib.decompress(base64.b64decode(encoded), -15)
    return str(etree.fromstring(xml).get("ID"))


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_response(
    signer: KeyPair | None,
    *,
    in_response_to: str | None,
    email: str = "alice@acme.com",
    groups: tuple[str, ...] = (),
    audience: str = SP_ENTITY,
    issuer: str = IDP_ENTITY,
    acs: str = ACS,
    not_on_or_after: datetime.timedelta = datetime.timedelta(minutes=5),
    issued: datetime.timedelta = datetime.timedelta(0),
    algorithm: str = "sha256",
) -> str:
    """A base64 SAML Response whose assertion is signed by ``signer`` (None: unsigned).

    :param algorithm: ``sha256`` (RSA-SHA256, SHA-256 digest), ``sha1`` (RSA-SHA1, SHA-1 digest: what old
        ADFS farms send), or ``sha1-digest`` (RSA-SHA256 over a SHA-1 digest).
    """
    now = datetime.datetime.now(datetime.UTC) + issued
    end = now + not_on_or_after
    irt = f' InResponseTo="{in_response_to}"' if in_response_to else ""
    aid = "_a" + uuid.uuid4().hex
    group_values = "".join(f"<saml:AttributeValue>{g}</saml:AttributeValue>" for g in groups)
    xml = f"""<samlp:Response xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="_r{uuid.uuid4().hex}"
 Version="2.0"
 IssueInstant="{_iso(now)}" Destination="{acs}"{irt}>
<saml:Issuer>{issuer}</saml:Issuer>
<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
<saml:Assertion ID="{aid}" Version="2.0" IssueInstant="{_iso(now)}">
<saml:Issuer>{issuer}</saml:Issuer>
<saml:Subject>
<saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{email}</saml:NameID>
<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
<saml:SubjectConfirmationData NotOnOrAfter="{_iso(end)}" Recipient="{acs}"{irt}/>
</saml:SubjectConfirmation>
</saml:Subject>
<saml:Conditions NotBefore="{_iso(now - datetime.timedelta(minutes=1))}" NotOnOrAfter="{_iso(end)}">
<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction>
</saml:Conditions>
<saml:AuthnStatement AuthnInstant="{_iso(now)}" SessionIndex="_s{uuid.uuid4().hex}">
<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>
</saml:AuthnStatement>
<saml:AttributeStatement>
<saml:Attribute Name="email"><saml:AttributeValue>{email}</saml:AttributeValue></saml:Attribute>
<saml:Attribute Name="groups">{group_values}</saml:Attribute>
</saml:AttributeStatement>
</saml:Assertion>
</samlp:Response>"""
    root = etree.fromstring(xml.encode())
    if signer is not None:
        assertion = root.find(f"{{{SAML}}}Assertion")
        xmlsec.tree.add_ids(root, ["ID"])
        sign_with, digest_with = {
            "sha256": (xmlsec.constants.TransformRsaSha256, xmlsec.constants.TransformSha256),
            "sha1": (xmlsec.constants.TransformRsaSha1, xmlsec.constants.TransformSha1),
            "sha1-digest": (xmlsec.constants.TransformRsaSha256, xmlsec.constants.TransformSha1),
        }[algorithm]
        signature = xmlsec.template.create(assertion, xmlsec.constants.TransformExclC14N, sign_with, ns="ds")
        assertion.find(f"{{{SAML}}}Issuer").addnext(signature)
        ref = xmlsec.template.add_reference(signature, digest_with, uri=f"#{aid}")
        xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
        xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
        xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
        key = xmlsec.Key.from_memory(signer.key_pem, xmlsec.constants.KeyDataFormatPem)
        key.load_cert_from_memory(signer.cert_pem, xmlsec.constants.KeyDataFormatPem)
        context = xmlsec.SignatureContext()
        context.key = key
        context.sign(signature)
    return base64.b64encode(etree.tostring(root)).decode()

"""Signed metadata and JWKS generated at test time (xmlsec, cryptography, joserfc)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from .builders import idp_metadata


def _key_and_cert() -> tuple[bytes, bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "metadata signer")])
    now = datetime.now(tz=UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.DER)


def signed_metadata() -> tuple[str, str]:
    """(metadata signed with an enveloped signature, the signer's sha256 fingerprint)."""
    key_pem, cert_pem, cert_der = _key_and_cert()
    root = etree.fromstring(idp_metadata().split("?>", 1)[1].encode())
    root.set("ID", "md-1")
    signature = xmlsec.template.create(root, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.RSA_SHA256)
    root.insert(0, signature)
    ref = xmlsec.template.add_reference(signature, xmlsec.Transform.SHA256, uri="#md-1")
    xmlsec.template.add_transform(ref, xmlsec.Transform.ENVELOPED)
    xmlsec.template.add_transform(ref, xmlsec.Transform.EXCL_C14N)
    key_info = xmlsec.template.ensure_key_info(signature)
    xmlsec.template.add_x509_data(key_info)
    ctx = xmlsec.SignatureContext()
    ctx.register_id(root, "ID")
    key = xmlsec.Key.from_memory(key_pem, xmlsec.KeyFormat.PEM)
    key.load_cert_from_memory(cert_pem, xmlsec.KeyFormat.PEM)
    ctx.key = key
    ctx.sign(signature)
    digest = hashlib.sha256(cert_der).hexdigest().upper()
    fingerprint = "sha256:" + ":".join(digest[i:i + 2] for i in range(0, 64, 2))
    return etree.tostring(root).decode(), fingerprint


def jwks() -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()

    def b64(n: int) -> str:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "k1", "n": b64(numbers.n),
                      "e": b64(numbers.e)}]}

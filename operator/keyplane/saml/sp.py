"""The service-provider side: SP signing key pair and python3-saml settings (SP metadata: `keyplane.contract`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.errors import OneLogin_Saml2_Error
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from keyplane.mergepatch import copy_tree
from keyplane.saml.metadata import IdPMetadata


class SPConfigError(ValueError):
    """The SP side cannot be configured (missing key pair, URL python3-saml refuses)."""


def generate_sp_signing_pair(
    common_name: str, now: datetime, validity: timedelta = timedelta(days=365)
) -> tuple[str, str]:
    """A fresh self-signed RSA-2048/SHA-256 certificate and its key: (cert_pem, key_pem)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # X.509 limits a CN to 64 characters; SP entity IDs (URLs) can be longer.
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (common_name or "keyplane-sp")[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # A little backdating so an IdP whose clock runs slightly behind accepts it at once.
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return cert_pem, key_pem


def sp_certificate_needs_renewal(
    cert_pem: str, now: datetime, renew_before: timedelta = timedelta(days=30)
) -> bool:
    """True when the SP certificate is unreadable, not yet valid, or expires within `renew_before`."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return True
    return not (cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > renew_before)


def build_saml_settings(
    *,
    sp_entity_id: str,
    acs_url: str,
    sls_url: str | None,
    sp_cert_pem: str | None,
    sp_key_pem: str | None,
    idp: IdPMetadata,
    name_id_format: str,
    sign_authn_requests: bool,
    want_assertions_signed: bool,
    allow_idp_initiated: bool,
    want_assertions_encrypted: bool = False,
    allow_deprecated_algorithms: bool = False,
) -> dict[str, Any]:
    """A python3-saml settings dict (strict) for one SP/IdP pair; same input, equal output.

    Raises SPConfigError when python3-saml would refuse the result.
    """
    has_key_pair = bool(sp_cert_pem and sp_key_pem)
    if sign_authn_requests and not has_key_pair:
        raise SPConfigError("signAuthnRequests needs the SP certificate and private key")
    if want_assertions_encrypted and not has_key_pair:
        raise SPConfigError("wantAssertionsEncrypted needs the SP certificate and private key")
    settings: dict[str, Any] = {
        "strict": True,
        "debug": False,
        "sp": _sp_block(sp_entity_id, acs_url, sls_url, sp_cert_pem, sp_key_pem, name_id_format),
        "idp": _idp_block(idp),
        "security": _security_block(
            has_key_pair=has_key_pair,
            sign_authn_requests=sign_authn_requests,
            want_assertions_signed=want_assertions_signed,
            allow_idp_initiated=allow_idp_initiated,
            allow_deprecated_algorithms=allow_deprecated_algorithms,
            want_assertions_encrypted=want_assertions_encrypted,
        ),
    }
    try:
        OneLogin_Saml2_Settings(copy_tree(settings), sp_validation_only=False)  # it edits what it is given
    except OneLogin_Saml2_Error as exc:
        raise SPConfigError(f"python3-saml refuses the settings: {exc}") from None
    return settings


def _sp_block(
    entity_id: str, acs_url: str, sls_url: str | None, cert_pem: str | None, key_pem: str | None, name_id_format: str
) -> dict[str, Any]:
    sp: dict[str, Any] = {
        "entityId": entity_id,
        "assertionConsumerService": {"url": acs_url, "binding": C.BINDING_HTTP_POST},
        "NameIDFormat": name_id_format,
    }
    if sls_url:
        # python3-saml publishes one binding; the app's /slo route also takes HTTP-POST.
        sp["singleLogoutService"] = {"url": sls_url, "binding": C.BINDING_HTTP_REDIRECT}
    if cert_pem and key_pem:
        sp["x509cert"] = cert_pem
        sp["privateKey"] = key_pem
    return sp


def _idp_block(idp: IdPMetadata) -> dict[str, Any]:
    block: dict[str, Any] = {
        "entityId": idp.entity_id,
        "singleSignOnService": {"url": idp.sso_url, "binding": idp.sso_binding},
    }
    if idp.slo_url:
        block["singleLogoutService"] = {"url": idp.slo_url, "binding": idp.slo_binding or C.BINDING_HTTP_REDIRECT}
    signing = [c.der_b64 for c in idp.signing_certificates]
    encryption = [c.der_b64 for c in idp.encryption_certificates]
    if len(signing) == 1 and encryption in ([], signing):
        block["x509cert"] = signing[0]
    else:
        # Several signing certificates (rollover): python3-saml accepts a response signed by any.
        block["x509certMulti"] = {"signing": signing, "encryption": encryption}
    return block


def _security_block(
    *, has_key_pair: bool, sign_authn_requests: bool, want_assertions_signed: bool, allow_idp_initiated: bool,
    allow_deprecated_algorithms: bool, want_assertions_encrypted: bool = False,
) -> dict[str, Any]:
    return {
        "authnRequestsSigned": sign_authn_requests,
        "logoutRequestSigned": has_key_pair,
        "logoutResponseSigned": has_key_pair,
        "signMetadata": False,
        "wantAssertionsSigned": want_assertions_signed,
        "wantMessagesSigned": False,
        # The SP metadata then publishes the SP certificate as the encryption key as well: one key
        # pair, so what an IdP encrypts to is what the SP decrypts with.
        "wantAssertionsEncrypted": want_assertions_encrypted,
        "wantNameId": True,
        "wantNameIdEncrypted": False,
        # Many IdPs send no AttributeStatement for some users; the NameID is enough to log in.
        "wantAttributeStatement": False,
        # python3-saml's default asks for PasswordProtectedTransport, which makes IdPs that
        # use MFA or passwordless sign-in refuse the request.
        "requestedAuthnContext": False,
        "signatureAlgorithm": C.RSA_SHA256,
        "digestAlgorithm": C.SHA256,
        "rejectUnsolicitedResponsesWithInResponseTo": not allow_idp_initiated,
        # RSA-SHA1 signatures and SHA-1 digests: refused unless spec.saml.allowDeprecatedAlgorithms.
        "rejectDeprecatedAlgorithm": not allow_deprecated_algorithms,
        # Scheme and host are checked by Keyplane itself; in-cluster IdPs use single-label names.
        "allowSingleLabelDomains": True,
    }

"""X.509 certificates as found in metadata and specs: loading, fingerprints, validity."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from keyplane.contract import rfc3339
from keyplane.saml.errors import MetadataError

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_WHITESPACE = re.compile(r"\s+")


def format_fingerprint(digest: bytes) -> str:
    """`AB:CD:...`, the form used in status and in `signingCertificateFingerprint`."""
    return ":".join(f"{byte:02X}" for byte in digest)


@dataclass(frozen=True)
class CertificateInfo:
    """The public facts about one certificate that Keyplane reports and pins."""

    der_b64: str
    sha256: str
    subject: str
    not_before: datetime
    not_after: datetime

    def to_status(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "subject": self.subject, "notAfter": rfc3339(self.not_after)}

    def pem(self) -> str:
        body = "\n".join(self.der_b64[i : i + 64] for i in range(0, len(self.der_b64), 64))
        return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


# A pure function of the bytes, and the same certificate comes back often: an IdP's metadata lists it for
# signing and encryption, is re-read at every refresh, and several IdentityProviders may trust one IdP.
# Refusals are raised, so never cached.
@functools.lru_cache(maxsize=1024)
def certificate_from_der(der: bytes) -> CertificateInfo:
    """Describe a DER certificate; raises MetadataError(CertificateInvalid) when it is not one."""
    try:
        with warnings.catch_warnings():
            # Old IdP certificates often have a negative serial; that is the IdP's to fix.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(der)
        subject = cert.subject.rfc4514_string()
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
    except ValueError as exc:
        raise MetadataError(
            "CertificateInvalid", f"the data is not a valid X.509 certificate ({str(exc)[:120]})"
        ) from None
    return CertificateInfo(
        der_b64=base64.b64encode(der).decode("ascii"),
        sha256=format_fingerprint(hashlib.sha256(der).digest()),
        subject=subject,
        not_before=not_before,
        not_after=not_after,
    )


def load_certificate(text: str) -> CertificateInfo:
    """Load a PEM certificate (headers optional) or the bare base64 DER of `<ds:X509Certificate>`."""
    if not isinstance(text, str) or not text.strip():
        raise MetadataError("CertificateInvalid", "the certificate is empty")
    blocks = _PEM_BLOCK.findall(text)
    if blocks:
        label, body = blocks[0]
        if label != "CERTIFICATE":
            # Never echo the content: this is where a private key pasted by mistake would be.
            hint = " and rotate it, it is no longer secret" if "PRIVATE" in label else ""
            raise MetadataError(
                "CertificateInvalid",
                f"expected a CERTIFICATE PEM block, found {label}: remove it from the spec{hint}",
            )
    elif "-----" in text:
        raise MetadataError("CertificateInvalid", "the PEM block is truncated (BEGIN without matching END)")
    else:
        body = text
    compact = _WHITESPACE.sub("", body)
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise MetadataError(
            "CertificateInvalid",
            "the certificate is neither PEM nor base64-encoded DER; paste the IdP's X.509 signing "
            "certificate (-----BEGIN CERTIFICATE-----...)",
        ) from None
    if not der:
        raise MetadataError("CertificateInvalid", "the certificate is empty")
    return certificate_from_der(der)


def normalize_fingerprint(s: str) -> str:
    """Accept `sha256:ab:cd..`, `AB CD ..`, `AB-CD`, bare hex; return `AB:CD:...` (32 bytes)."""
    text = re.sub(r"^\s*sha-?256\s*[:=]", "", s, flags=re.IGNORECASE)
    compact = re.sub(r"[\s:\-]", "", text)
    if not re.fullmatch(r"[0-9A-Fa-f]*", compact):
        raise ValueError("a SHA-256 fingerprint may only contain hex digits and ':' separators")
    if len(compact) != 64:
        raise ValueError(
            f"a SHA-256 fingerprint has 64 hex digits (32 bytes), this one has {len(compact)}; "
            "write it like sha256:AB:CD:..."
        )
    return format_fingerprint(bytes.fromhex(compact))


def evaluate_certificates(
    certs: list[CertificateInfo], now: datetime, warning_window: timedelta
) -> tuple[str, str, bool]:
    """Judge a set of IdP signing certificates: (reason, message, usable).

    Reasons: Valid, ExpiringSoon, Expired, NotYetValid, NoSigningCertificate. During a rollover
    (several valid certificates) the set is judged on the one that lasts longest: the IdP has
    already published its replacement, so warning about the old one would be noise the admin
    cannot act on; the message still mentions it.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if not certs:
        return ("NoSigningCertificate", "the IdP publishes no signing certificate", False)
    valid = [c for c in certs if c.not_before <= now < c.not_after]
    if not valid:
        expired = [c for c in certs if c.not_after <= now]
        if expired:
            latest = max(expired, key=lambda c: c.not_after)
            return (
                "Expired",
                f"every IdP signing certificate has expired (the latest, {latest.sha256}, on "
                f"{rfc3339(latest.not_after)}); the IdP must publish a new one, or update the "
                "certificates in the spec",
                False,
            )
        first = min(certs, key=lambda c: c.not_before)
        return (
            "NotYetValid",
            f"no IdP signing certificate is valid yet (the first, {first.sha256}, becomes valid on "
            f"{rfc3339(first.not_before)}); check the certificate or the clock",
            False,
        )
    longest = max(valid, key=lambda c: c.not_after)
    soonest = min(valid, key=lambda c: c.not_after)
    if longest.not_after - now <= warning_window:
        return (
            "ExpiringSoon",
            f"the IdP signing certificate {longest.sha256} expires on {rfc3339(longest.not_after)}; "
            "roll it over in the IdP and publish the new certificate before then",
            True,
        )
    if soonest is not longest and soonest.not_after - now <= warning_window:
        return (
            "Valid",
            f"{len(valid)} valid signing certificates (rollover): {soonest.sha256} expires on "
            f"{rfc3339(soonest.not_after)}, {longest.sha256} is valid until {rfc3339(longest.not_after)}",
            True,
        )
    return (
        "Valid",
        f"{len(valid)} valid signing certificate(s), valid until {rfc3339(longest.not_after)}",
        True,
    )

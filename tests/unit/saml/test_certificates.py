"""Certificate loading, fingerprints and the Valid / ExpiringSoon / Expired judgement."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest

from keyplane.saml.certificates import (
    CertificateInfo,
    evaluate_certificates,
    load_certificate,
    normalize_fingerprint,
)
from keyplane.saml.errors import MetadataError

from .conftest import NOW, IssuedCert, make_cert

WINDOW = timedelta(days=30)


def test_loads_pem_and_reports_facts(cert: IssuedCert) -> None:
    info = load_certificate(cert.cert_pem)
    assert info.sha256 == cert.sha256
    assert info.der_b64 == cert.der_b64
    assert info.subject == "CN=idp.example.com"
    assert info.not_after.tzinfo is not None
    assert info.to_status() == {
        "sha256": cert.sha256,
        "subject": "CN=idp.example.com",
        "notAfter": info.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert info.to_status()["notAfter"].endswith("Z")


def test_all_textual_forms_give_the_same_certificate(cert: IssuedCert) -> None:
    body = cert.cert_pem.split("-----")[2]
    forms = [
        cert.cert_pem,
        "\n  " + cert.cert_pem.replace("\n", "\r\n") + "  \n",
        body,  # PEM without header lines
        cert.der_b64,  # as in <ds:X509Certificate>
        textwrap.fill(cert.der_b64, 40),
        "   ".join(textwrap.wrap(cert.der_b64, 76)),
        "Subject: CN=idp\n" + cert.cert_pem,  # openssl x509 -text style preamble
    ]
    assert {load_certificate(f).sha256 for f in forms} == {cert.sha256}


@pytest.mark.parametrize(
    "text",
    ["", "   ", "not a certificate!", "QUJDREVG", "-----BEGIN CERTIFICATE-----\nAAAA", "MIIB" * 10],
)
def test_garbage_is_certificate_invalid(text: str) -> None:
    with pytest.raises(MetadataError) as caught:
        load_certificate(text)
    assert caught.value.reason == "CertificateInvalid"


def test_private_key_is_refused_without_echoing_it(cert: IssuedCert) -> None:
    with pytest.raises(MetadataError) as caught:
        load_certificate(cert.key_pem)
    assert caught.value.reason == "CertificateInvalid"
    assert "PRIVATE KEY" in caught.value.message
    secret_line = cert.key_pem.splitlines()[1]
    assert secret_line not in caught.value.message
    assert secret_line[:20] not in str(caught.value)


def test_normalize_fingerprint_forms(cert: IssuedCert) -> None:
    bare = cert.sha256.replace(":", "")
    for form in (
        cert.sha256,
        cert.sha256.lower(),
        "sha256:" + cert.sha256.lower(),
        "SHA256:" + cert.sha256,
        "sha256=" + bare,
        cert.sha256.replace(":", " "),
        bare,
        bare.lower(),
    ):
        assert normalize_fingerprint(form) == cert.sha256


@pytest.mark.parametrize(
    "bad", ["", "AB:CD", "sha256:" + "AB" * 20, "ZZ" * 32, "AB" * 33, "sha1:" + "AB" * 20]
)
def test_normalize_fingerprint_rejects_wrong_length_or_chars(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_fingerprint(bad)


def _info(days_before: int, days_after: int) -> CertificateInfo:
    c = make_cert(not_before=NOW - timedelta(days=days_before), not_after=NOW + timedelta(days=days_after))
    return load_certificate(c.cert_pem)


def test_valid() -> None:
    reason, message, usable = evaluate_certificates([_info(10, 300)], NOW, WINDOW)
    assert (reason, usable) == ("Valid", True)
    assert "valid until" in message


def test_expiring_soon_names_fingerprint_and_date() -> None:
    info = _info(300, 10)
    reason, message, usable = evaluate_certificates([info], NOW, WINDOW)
    assert (reason, usable) == ("ExpiringSoon", True)
    assert info.sha256 in message
    assert info.to_status()["notAfter"] in message


def test_expired() -> None:
    info = _info(400, -5)
    reason, message, usable = evaluate_certificates([info], NOW, WINDOW)
    assert (reason, usable) == ("Expired", False)
    assert info.sha256 in message


def test_not_yet_valid() -> None:
    reason, _, usable = evaluate_certificates([_info(-5, 300)], NOW, WINDOW)
    assert (reason, usable) == ("NotYetValid", False)


def test_no_valid_mix_prefers_expired() -> None:
    reason, _, usable = evaluate_certificates([_info(-5, 300), _info(400, -5)], NOW, WINDOW)
    assert (reason, usable) == ("Expired", False)


def test_rollover_with_an_expired_one_is_judged_on_the_valid_one() -> None:
    assert evaluate_certificates([_info(400, -5), _info(10, 300)], NOW, WINDOW)[::2] == ("Valid", True)
    assert evaluate_certificates([_info(400, -5), _info(300, 10)], NOW, WINDOW)[::2] == ("ExpiringSoon", True)


def test_rollover_old_expiring_new_published_is_valid_and_says_so() -> None:
    old, new = _info(300, 10), _info(5, 700)
    reason, message, usable = evaluate_certificates([old, new], NOW, WINDOW)
    assert (reason, usable) == ("Valid", True)
    assert old.sha256 in message and new.sha256 in message


def test_expiry_boundary_and_naive_now() -> None:
    info = _info(10, 0)  # not_after == NOW: no longer valid
    assert evaluate_certificates([info], NOW, WINDOW)[0] == "Expired"
    assert evaluate_certificates([_info(10, 300)], NOW.replace(tzinfo=None), WINDOW)[0] == "Valid"


def test_empty_list_is_not_usable() -> None:
    reason, _, usable = evaluate_certificates([], NOW, WINDOW)
    assert (reason, usable) == ("NoSigningCertificate", False)

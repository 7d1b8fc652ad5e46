"""The objects the benchmarks create: N of each kind spread over namespaces (inline SAML metadata)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

GROUP_VERSION = "keyplane.dev/v1alpha1"
QUICKSTART_IDP = Path(__file__).resolve().parents[1] / "examples" / "quickstart" / "10-identityprovider-okta.yaml"
INLINE_ENTITY_ID = "http://www.okta.com/exkDEMO1234567890"  # the entityID of inline_metadata()
KINDS = {"IdentityProvider": "identityproviders", "ScimConnection": "scimconnections", "SSODomain": "ssodomains"}


def inline_metadata() -> str:
    """The quickstart's Okta metadata document (self-contained, a real signing certificate)."""
    doc = yaml.safe_load(QUICKSTART_IDP.read_text())
    return str(doc["spec"]["saml"]["metadata"]["inline"])


def own_idps(docs: list[dict[str, Any]]) -> None:
    """Give every IdentityProvider of `docs` an IdP of its own: its own entityID and signing certificate in
    its inline metadata, as IdentityProviders of many tenants would have (one document shared by all would be
    parsed once, and one certificate described once). The certificates share one RSA key, so making them is
    quick; each is self-signed for its own subject."""
    import base64
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    template = inline_metadata()
    shared_certificate = template.split("<ds:X509Certificate>")[1].split("</ds:X509Certificate>")[0]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for position, doc in enumerate(d for d in docs if d["kind"] == "IdentityProvider"):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"idp-{position:04d}.bench.example")])
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                       .serial_number(position + 1).not_valid_before(start)
                       .not_valid_after(start + timedelta(days=3650)).sign(key, hashes.SHA256()))
        der = base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
        doc["spec"]["saml"]["metadata"] = {"inline": template.replace(shared_certificate, der).replace(
            INLINE_ENTITY_ID, f"{INLINE_ENTITY_ID}-{position:04d}")}


def namespace_of(i: int, namespaces: int) -> str:
    return f"bench-{i % namespaces:02d}"


def namespace_manifests(namespaces: int) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench-{j:02d}"}}
            for j in range(namespaces)]


def idp_manifest(i: int, namespaces: int, *, metadata: dict[str, Any], sign: bool = False,
                 prefix: str = "idp") -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION, "kind": "IdentityProvider",
        "metadata": {"name": f"{prefix}-{i:04d}", "namespace": namespace_of(i, namespaces)},
        "spec": {
            "protocol": "SAML",
            "saml": {"metadata": metadata, "signAuthnRequests": sign, "wantAssertionsSigned": True,
                     "attributeMapping": {"email": "email", "groups": "groups"}},
            "serviceProvider": {"baseURL": "https://platform.example.com"},
        },
    }


def scim_manifest(i: int, namespaces: int) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION, "kind": "ScimConnection",
        "metadata": {"name": f"scim-{i:04d}", "namespace": namespace_of(i, namespaces)},
        "spec": {
            "identityProviderRef": {"name": f"idp-{i:04d}"},
            "token": {"rotationInterval": "2160h", "overlap": "24h"},
            "provisioning": {"defaultUserRole": "Member"},
            "groupBindings": [{"group": "platform-admins", "role": "Admin"},
                              {"group": "engineering", "role": "Member"}],
        },
    }


def ssod_manifest(i: int, namespaces: int) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION, "kind": "SSODomain",
        "metadata": {"name": f"ssod-{i:04d}", "namespace": namespace_of(i, namespaces)},
        "spec": {
            "domains": [f"tenant-{i:04d}.example.com"],
            "identityProviderRef": {"name": f"idp-{i:04d}"},
            "enforcement": "Required",
            "breakGlassUsers": [f"root@tenant-{i:04d}.example.com"],
        },
    }


def objects(n: int, namespaces: int = 10, *, metadata: dict[str, Any] | None = None,
            kinds: tuple[str, ...] = ("IdentityProvider", "SSODomain", "ScimConnection"),
            sign: bool = False) -> list[dict[str, Any]]:
    """N of each kind; object i of every kind lives in namespace i % namespaces and refers to idp-i."""
    meta = metadata if metadata is not None else {"inline": inline_metadata()}
    out: list[dict[str, Any]] = []
    for i in range(n):
        if "IdentityProvider" in kinds:
            out.append(idp_manifest(i, namespaces, metadata=meta, sign=sign))
        if "SSODomain" in kinds:
            out.append(ssod_manifest(i, namespaces))
        if "ScimConnection" in kinds:
            out.append(scim_manifest(i, namespaces))
    return out


def url_idps(k: int, base_url: str, refresh: str, namespaces: int = 10) -> list[dict[str, Any]]:
    """K IdentityProviders on metadata URLs of their own (`?idp=i`: no sharing), refreshing every `refresh`."""
    return [idp_manifest(i, namespaces, prefix="url-idp",
                         metadata={"url": f"{base_url}?idp={i}", "refreshInterval": refresh}) for i in range(k)]

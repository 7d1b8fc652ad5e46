"""Manifests and IdP documents for the integration tests, generated at test time (nothing expires)."""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

API = "keyplane.dev/v1alpha1"
NS = "team-a"


@functools.cache
def certificate_b64(cn: str = "idp.test signing", days: int = 365, offset_days: int = -1) -> str:
    """A self-signed certificate as the base64 DER that metadata documents carry."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = datetime.now(tz=UTC) + timedelta(days=offset_days)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start)
        .not_valid_after(start + timedelta(days=days)).sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def idp_metadata(entity_id: str = "https://idp.test/entity", sso_url: str = "https://idp.test/sso",
                 certs: tuple[str, ...] | None = None) -> str:
    keys = "".join(
        f'<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
        f"<ds:X509Data><ds:X509Certificate>{c}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        for c in (certs if certs is not None else (certificate_b64(),))
    )
    return (
        '<?xml version="1.0"?>'
        f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity_id}">'
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{keys}"
        f'<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{sso_url}"/>'
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )


def namespace(name: str = NS) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def saml_idp(name: str, *, ns: str = NS, inline: str | None = None, url: str | None = None,
             refresh: str = "1s", sign: bool = False, **saml: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"url": url, "refreshInterval": refresh} if url else {"inline": inline or idp_metadata()}
    return {
        "apiVersion": API, "kind": "IdentityProvider", "metadata": {"name": name, "namespace": ns},
        "spec": {"protocol": "SAML", "saml": {"metadata": metadata, "signAuthnRequests": sign, **saml},
                 "serviceProvider": {"baseURL": "https://app.test"}},
    }


def sso_domain(name: str, domains: list[str], idp: str, *, ns: str = NS, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "SSODomain", "metadata": {"name": name, "namespace": ns},
            "spec": {"domains": domains, "identityProviderRef": {"name": idp}, **spec}}


def scim(name: str, *, ns: str = NS, idp: str | None = None, bindings: dict[str, str] | None = None,
         annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API, "kind": "ScimConnection",
        "metadata": {"name": name, "namespace": ns, **({"annotations": annotations} if annotations else {})},
        "spec": {"groupBindings": [{"group": g, "role": r} for g, r in (bindings or {}).items()], **spec},
    }
    if idp:
        body["spec"]["identityProviderRef"] = {"name": idp}
    return body


def condition(obj: dict[str, Any] | None, type_: str = "Ready") -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def is_ready(obj: dict[str, Any] | None) -> bool:
    return condition(obj).get("status") == "True"


def decode(secret: dict[str, Any] | None, key: str) -> str:
    return base64.b64decode((secret or {})["data"][key]).decode()


def bundle_of(secret: dict[str, Any] | None) -> dict[str, Any]:
    return dict(json.loads(decode(secret, "identity.json")))

"""Builders shared by the operator unit tests (certificates made at test time, snapshots, settings).

Named uniquely (no __init__.py here): test modules import it as a top-level module.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from keyplane.reconcile.identityprovider import IdPObservation, SigningPair
from keyplane.reconcile.model import Snapshot
from keyplane.saml.metadata import IdPMetadata, manual_idp_metadata
from keyplane.settings import Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
QUICKSTART = EXAMPLES / "quickstart"
NS = "team-a"


@dataclass(frozen=True)
class Cert:
    cert_pem: str
    key_pem: str
    der_b64: str


@cache
def _key(index: int) -> rsa.RSAPrivateKey:
    # RSA generation is the slow part: a handful of keys serve the whole session.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def make_cert(
    cn: str = "idp.example.com",
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=365),
    key_index: int = 0,
) -> Cert:
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
    return Cert(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        der_b64=base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(),
    )


def sp_pair() -> SigningPair:
    cert = make_cert("platform.example.com sp", key_index=1)
    return SigningPair(cert.cert_pem, cert.key_pem)


def idp_metadata(
    cert: Cert | None = None,
    *,
    entity_id: str = "http://www.okta.com/exk1",
    sso_url: str = "https://acme.okta.example/sso/saml",
    binding: str = "HTTP-Redirect",
) -> IdPMetadata:
    return manual_idp_metadata(entity_id, sso_url, binding, None, [(cert or make_cert()).cert_pem])


def settings(**overrides: Any) -> Settings:
    return Settings(**{"default_base_url": "https://default.example.com", **overrides})


def snapshot(
    kind: str,
    name: str,
    spec: dict[str, Any],
    *,
    namespace: str = NS,
    generation: int = 1,
    status: dict[str, Any] | None = None,
    uid: str | None = None,
    created: str = "2026-01-01T00:00:00Z",
    annotations: dict[str, str] | None = None,
    deleting: bool = False,
) -> Snapshot:
    return Snapshot(
        kind=kind,
        namespace=namespace,
        name=name,
        uid=uid if uid is not None else f"uid-{kind.lower()}-{namespace}-{name}",
        generation=generation,
        creation_timestamp=created,
        spec=json.loads(json.dumps(spec)),
        status=json.loads(json.dumps(status or {})),
        annotations=dict(annotations or {}),
        deleting=deleting,
    )


def saml_spec(base_url: str | None = "https://platform.example.com", **saml: Any) -> dict[str, Any]:
    block: dict[str, Any] = {"metadata": {"url": "https://acme.okta.example/metadata"}, **saml}
    spec: dict[str, Any] = {"displayName": "Okta", "protocol": "SAML", "saml": block}
    if base_url:
        spec["serviceProvider"] = {"baseURL": base_url}
    return spec


def oidc_spec(secret: bool = True) -> dict[str, Any]:
    oidc: dict[str, Any] = {"issuer": "https://accounts.example.com", "clientID": "client-abc"}
    if secret:
        oidc["clientSecretRef"] = {"name": "google-oidc", "key": "client-secret"}
    return {"protocol": "OIDC", "oidc": oidc, "serviceProvider": {"baseURL": "https://platform.example.com"}}


def idp_snap(name: str = "okta", spec: dict[str, Any] | None = None, **kw: Any) -> Snapshot:
    return snapshot("IdentityProvider", name, spec if spec is not None else saml_spec(), **kw)


def domain_snap(name: str, domains: list[str], idp: str = "okta", **kw: Any) -> Snapshot:
    extra = kw.pop("spec_extra", {})
    return snapshot(
        "SSODomain", name, {"domains": domains, "identityProviderRef": {"name": idp}, **extra}, **kw
    )


def scim_snap(name: str = "okta", spec: dict[str, Any] | None = None, **kw: Any) -> Snapshot:
    default = {
        "identityProviderRef": {"name": "okta"},
        "groupBindings": [{"group": "platform-admins", "role": "Admin"}, {"group": "data", "role": "Member"}],
    }
    return snapshot("ScimConnection", name, spec if spec is not None else default, **kw)


def ready_observation(snap: Snapshot, idp: IdPMetadata | None = None, **kw: Any) -> IdPObservation:
    values: dict[str, Any] = {
        "generation": snap.generation,
        "saml": idp or idp_metadata(),
        "resolved_generation": snap.generation,
        "signing": sp_pair(),
        "metadata": {"sha256": "ab" * 32, "lastChangeTime": "2026-06-01T12:00:00Z"},
        "from_url": True,
    }
    values.update(kw)
    return IdPObservation(**values)


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = [c for c in status.get("conditions") or [] if c["type"] == type_]
    assert len(found) == 1, f"expected one {type_} condition in {status.get('conditions')}"
    return found[0]


def cstate(status: dict[str, Any], type_: str) -> tuple[str, str]:
    c = cond(status, type_)
    return c["status"], c["reason"]


def with_status(snap: Snapshot, status: dict[str, Any]) -> Snapshot:
    """The same object after its status was written (what the next reconcile sees)."""
    return replace(snap, status=json.loads(json.dumps(status)))


def undeclared_fields(kind: str, status: dict[str, Any]) -> list[str]:
    """Status fields the API server would silently prune: not declared in the CRD's structural schema."""
    from keyplane.api.crds import openapi_schema
    from keyplane.api.kinds import KINDS_BY_NAME

    def walk(schema: dict[str, Any], value: Any, path: str) -> list[str]:
        if isinstance(value, dict) and "properties" in schema:
            found = [f"{path}.{k}" for k in value if k not in schema["properties"]]
            for key, child in value.items():
                if key in schema["properties"]:
                    found += walk(schema["properties"][key], child, f"{path}.{key}")
            return found
        if isinstance(value, list) and isinstance(schema.get("items"), dict):
            return [p for i, v in enumerate(value) for p in walk(schema["items"], v, f"{path}[{i}]")]
        return []

    return walk(openapi_schema(KINDS_BY_NAME[kind].status_model), status, ".status")

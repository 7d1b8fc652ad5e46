"""Reconcile of an IdentityProvider: (object, observed IdP, SP key pair) -> (status, bundle entry, events).

The observation is what the I/O layer found: the last successfully resolved IdP (kept across failed
refreshes: last-known-good), the latest attempt's problem, and the SP signing pair. A failed refresh
of a metadata URL keeps the IdP Ready on its last good document; a broken spec or document the user
gave makes it not Ready, while the bundle still serves the last good config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..api.identityprovider import IdentityProviderSpec
from ..oidc.discovery import OIDCProviderMetadata
from ..saml.certificates import evaluate_certificates
from ..saml.metadata import IdPMetadata
from ..saml.sp import build_saml_settings
from ..settings import Settings
from .conditions import Check, Outcome, Phase
from .model import Event, KindResult, Problem, Snapshot
from .result import finish
from .validation import spec_problem

METADATA_RESOLVED = "MetadataResolved"
CERTIFICATE_VALID = "CertificateValid"


@dataclass(frozen=True)
class SigningPair:
    """The SP signing certificate and key (PEM). The key only ever goes into Secrets."""

    certificate_pem: str
    private_key_pem: str


@dataclass(frozen=True)
class IdPObservation:
    """What reading the IdP produced for one generation of the object."""

    generation: int
    saml: IdPMetadata | None = None  # last successfully resolved SAML IdP (possibly from an older attempt)
    oidc: OIDCProviderMetadata | None = None
    client_secret: str | None = None
    resolved_generation: int | None = None  # generation whose spec produced saml/oidc
    problem: Problem | None = None  # the latest attempt's failure, if it failed
    signing: SigningPair | None = None
    signing_problem: Problem | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # lastAttemptTime, lastSuccessTime, sha256, etag
    from_url: bool = False


def base_url(spec: dict[str, Any] | Any, settings: Settings) -> str:
    configured = None
    if isinstance(spec, dict) and isinstance(spec.get("serviceProvider"), dict):
        configured = spec["serviceProvider"].get("baseURL")
    return str(configured if isinstance(configured, str) and configured else settings.default_base_url).rstrip("/")


def service_provider_urls(name: str, protocol: str, base: str) -> dict[str, str]:
    """The URLs an admin pastes into the IdP; DESIGN.md fixes their shape."""
    if protocol == "OIDC":
        return {
            "redirectURI": f"{base}/sso/oidc/{name}/callback",
            "postLogoutRedirectURI": f"{base}/sso/oidc/{name}/logged-out",
        }
    root = f"{base}/sso/saml/{name}"
    return {"entityID": root, "acsURL": f"{root}/acs", "sloURL": f"{root}/slo", "metadataURL": f"{root}/metadata"}


def needs_key_pair(saml: Any) -> bool:
    """Whether the SP needs its key pair: to sign AuthnRequests, or to decrypt assertions."""
    return bool(saml.signAuthnRequests or saml.wantAssertionsEncrypted)


def signing_secret_name(name: str) -> str:
    return f"{name}-sp-signing"


def _saml_entry(
    spec: IdentityProviderSpec, urls: dict[str, str], idp: IdPMetadata, signing: SigningPair | None
) -> dict[str, Any]:
    assert spec.saml is not None
    saml = spec.saml
    settings = build_saml_settings(
        sp_entity_id=urls["entityID"],
        acs_url=urls["acsURL"],
        sls_url=urls["sloURL"],
        sp_cert_pem=signing.certificate_pem if signing else None,
        sp_key_pem=signing.private_key_pem if signing else None,
        idp=idp,
        name_id_format=saml.nameIDFormat,
        sign_authn_requests=saml.signAuthnRequests,
        want_assertions_signed=saml.wantAssertionsSigned,
        want_assertions_encrypted=saml.wantAssertionsEncrypted,
        allow_idp_initiated=saml.allowIdPInitiated,
        allow_deprecated_algorithms=saml.allowDeprecatedAlgorithms,
    )
    return {
        "protocol": "SAML",
        "displayName": spec.displayName,
        "saml": settings,
        "attributeMapping": saml.attributeMapping.model_dump(),
        "allowIdPInitiated": saml.allowIdPInitiated,
    }


def _oidc_entry(
    spec: IdentityProviderSpec, urls: dict[str, str], provider: OIDCProviderMetadata, client_secret: str | None
) -> dict[str, Any]:
    assert spec.oidc is not None
    oidc = spec.oidc
    return {
        "protocol": "OIDC",
        "displayName": spec.displayName,
        "oidc": {
            "issuer": oidc.issuer,
            "clientID": oidc.clientID,
            "clientSecret": client_secret,
            "authorizationEndpoint": provider.authorization_endpoint,
            "tokenEndpoint": provider.token_endpoint,
            "jwksURI": provider.jwks_uri,
            "userinfoEndpoint": provider.userinfo_endpoint,
            "endSessionEndpoint": provider.end_session_endpoint,
            "scopes": list(oidc.scopes),
            "redirectURI": urls["redirectURI"],
            "postLogoutRedirectURI": urls["postLogoutRedirectURI"],
            "allowMissingEmailVerified": oidc.allowMissingEmailVerified,
        },
        "claimMapping": oidc.claimMapping.model_dump(),
    }


def _status_base(snap: Snapshot, spec_dict: dict[str, Any], settings: Settings) -> dict[str, Any]:
    protocol = "OIDC" if spec_dict.get("protocol") == "OIDC" else "SAML"
    urls = service_provider_urls(snap.name, protocol, base_url(spec_dict, settings))
    sp: dict[str, Any] = dict(urls)
    raw_saml = spec_dict.get("saml")
    saml: dict[str, Any] = raw_saml if isinstance(raw_saml, dict) else {}
    key_pair = saml.get("signAuthnRequests", True) is not False or saml.get("wantAssertionsEncrypted") is True
    if protocol == "SAML" and key_pair:
        sp["signingCertificateSecretRef"] = {"name": signing_secret_name(snap.name), "key": "tls.crt"}
    return {"serviceProvider": sp}


def reconcile_identity_provider(
    snap: Snapshot,
    observation: IdPObservation | None,
    previous_entry: dict[str, Any] | None,
    settings: Settings,
    now: datetime,
) -> KindResult:
    """Status, bundle entry and events of one IdentityProvider."""
    status = _status_base(snap, dict(snap.spec), settings)
    checks: list[Check] = []
    entry: dict[str, Any] | None = previous_entry
    try:
        spec = IdentityProviderSpec.model_validate(snap.spec)
    except ValidationError as exc:
        invalid = spec_problem(exc)
        outcome = Outcome(Phase.STALLED, invalid.reason, invalid.message)
        return _finish(snap, status, checks, outcome, entry, now)

    urls = service_provider_urls(snap.name, spec.protocol, base_url(dict(snap.spec), settings))
    if observation is None or observation.generation != snap.generation:
        outcome = Outcome(Phase.PROGRESSING, "Resolving", "Reading the identity provider's configuration.")
        return _finish(snap, status, checks, outcome, entry, now)

    status["metadata"] = dict(observation.metadata) or None
    checks.append(_metadata_resolved(observation))
    blocking: Outcome | None = None
    if observation.saml is not None:
        status["identityProvider"] = observation.saml.status_dict()
        entry, blocking = _saml_part(spec, urls, observation, checks, entry, settings, now)
    elif observation.oidc is not None:
        status["identityProvider"] = observation.oidc.status_dict()
        entry, blocking = _oidc_part(spec, urls, observation, entry)
    outcome = _overall(spec, urls, observation, blocking, entry is not None, snap.generation)
    return _finish(snap, status, checks, outcome, entry, now)


def _has_config(observation: IdPObservation) -> bool:
    return observation.saml is not None or observation.oidc is not None


def _metadata_resolved(observation: IdPObservation) -> Check:
    """MetadataResolved: did the latest read of the IdP's document (or manual settings) succeed?"""
    problem = observation.problem
    if problem is None and _has_config(observation):
        return Check(METADATA_RESOLVED, True, "Resolved", "The IdP configuration is read and valid.")
    if problem is not None:
        return Check(METADATA_RESOLVED, False, problem.reason, problem.message)
    return Check(METADATA_RESOLVED, False, "Resolving", "Reading the identity provider's configuration.")


def _saml_part(
    spec: IdentityProviderSpec, urls: dict[str, str], observation: IdPObservation, checks: list[Check],
    entry: dict[str, Any] | None, settings: Settings, now: datetime,
) -> tuple[dict[str, Any] | None, Outcome | None]:
    """CertificateValid, and the SAML entry unless the SP signing pair is still missing: (entry, blocking)."""
    idp = observation.saml
    assert idp is not None
    reason, message, usable = evaluate_certificates(
        list(idp.signing_certificates), now, settings.certificate_expiry_warning
    )
    checks.append(Check(CERTIFICATE_VALID, usable, reason, message))
    blocking = None if usable else Outcome(Phase.STALLED, reason, message)
    needs_signing = spec.saml is not None and needs_key_pair(spec.saml)
    if needs_signing and observation.signing is None:
        sp_problem = observation.signing_problem or Problem(
            "IssuingSigningKey", "Issuing the SP signing key pair.", transient=True
        )
        phase = Phase.PROGRESSING if sp_problem.transient else Phase.STALLED
        return entry, blocking or Outcome(phase, sp_problem.reason, sp_problem.message)
    return _saml_entry(spec, urls, idp, observation.signing if needs_signing else None), blocking


def _oidc_part(
    spec: IdentityProviderSpec, urls: dict[str, str], observation: IdPObservation, entry: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, Outcome | None]:
    """The OIDC entry, unless the referenced client secret is still missing: (entry, blocking)."""
    assert observation.oidc is not None
    ref = spec.oidc.clientSecretRef if spec.oidc is not None else None
    if ref is not None and observation.client_secret is None:
        return entry, Outcome(
            Phase.PROGRESSING,
            "ClientSecretNotFound",
            f"Waiting for Secret {ref.name} key {ref.key} holding the OIDC client secret.",
        )
    return _oidc_entry(spec, urls, observation.oidc, observation.client_secret), None


def _overall(
    spec: IdentityProviderSpec, urls: dict[str, str], observation: IdPObservation, blocking: Outcome | None,
    has_entry: bool, generation: int,
) -> Outcome:
    """Ready, LastKnownGood, or what blocks; a stalled block wins over a refresh problem."""
    problem = observation.problem
    have_config = _has_config(observation)
    if problem is not None:
        serving_same_source = have_config and observation.resolved_generation == generation and observation.from_url
        if serving_same_source:
            # The IdP's own server misbehaves; logins keep working on the last good document.
            last = (observation.metadata or {}).get("lastSuccessTime") or "earlier"
            outcome = Outcome(
                Phase.READY,
                "LastKnownGood",
                f"Serving the metadata read at {last}; the latest refresh failed ({problem.reason}): "
                f"{problem.message}",
            )
        else:
            phase = Phase.PROGRESSING if problem.transient else Phase.STALLED
            suffix = " The last working configuration stays in the bundle." if has_entry else ""
            outcome = Outcome(phase, problem.reason, problem.message + suffix)
        return blocking if blocking is not None and blocking.phase is Phase.STALLED else outcome
    if blocking is not None:
        return blocking
    if not have_config:
        return Outcome(Phase.PROGRESSING, "Resolving", "Reading the identity provider's configuration.")
    return Outcome(Phase.READY, "Ready", _ready_message(spec, urls))


def _ready_message(spec: IdentityProviderSpec, urls: dict[str, str]) -> str:
    if spec.protocol == "OIDC":
        return f"Register the redirect URI {urls['redirectURI']} at the IdP."
    return f"Give the IdP the ACS URL {urls['acsURL']} and the entity ID {urls['entityID']}."


def _finish(
    snap: Snapshot,
    status: dict[str, Any],
    checks: list[Check],
    outcome: Outcome,
    entry: dict[str, Any] | None,
    now: datetime,
) -> KindResult:
    result = finish(snap, status, checks, outcome, entry, now)
    result.events.extend(_idp_change_events(dict(snap.status), result.status))
    return result


def _idp_change_events(old: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    """Name what changed at the IdP (certificates, SSO URL), so a rollover is visible in `kubectl describe`."""
    before = old.get("identityProvider") or {}
    after = new.get("identityProvider") or {}
    if not before or not after:
        return []
    changes = []
    if before.get("ssoURL") != after.get("ssoURL"):
        changes.append(f"SSO URL {before.get('ssoURL')} -> {after.get('ssoURL')}")
    old_certs = {c.get("sha256") for c in before.get("certificates") or []}
    new_certs = {c.get("sha256") for c in after.get("certificates") or []}
    if added := sorted(new_certs - old_certs):
        changes.append("certificates added: " + ", ".join(a[:23] + "..." for a in added if a))
    if removed := sorted(old_certs - new_certs):
        changes.append("certificates removed: " + ", ".join(r[:23] + "..." for r in removed if r))
    if not changes:
        return []
    return [Event("Normal", "IdentityProviderChanged", "; ".join(changes))]


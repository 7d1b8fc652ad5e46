"""Reconcile of a ScimConnection: token state, group bindings checked against the roles, bundle entry."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..api.common import parse_duration
from ..api.scimconnection import ScimConnectionSpec
from ..contract import rfc3339, token_hash_live
from ..settings import Settings
from .conditions import Check, Outcome, Phase
from .identityprovider import base_url
from .model import KindResult, Problem, Snapshot
from .result import finish
from .scimtoken import TokenState
from .ssodomain import IdPState
from .validation import spec_problem

TOKEN_ISSUED = "TokenIssued"
BINDINGS_VALID = "BindingsValid"


def token_secret_name(snap: Snapshot) -> str:
    token = snap.spec.get("token")
    name = token.get("secretName") if isinstance(token, dict) else None
    return name if isinstance(name, str) and name else f"{snap.name}-scim-token"


def endpoint_path(name: str) -> str:
    return f"/scim/v2/{name}"


def bindings_problem(spec: ScimConnectionSpec, roles: tuple[str, ...]) -> Problem | None:
    """Unknown roles or duplicate groups, each named, so the admin knows exactly what to fix."""
    known = set(roles)
    offenders = []
    if spec.provisioning.defaultUserRole not in known:
        offenders.append(f"provisioning.defaultUserRole {spec.provisioning.defaultUserRole!r}")
    if spec.unboundGroupRole != "None" and spec.unboundGroupRole not in known:
        offenders.append(f"unboundGroupRole {spec.unboundGroupRole!r}")
    for binding in spec.groupBindings:
        if binding.role not in known:
            offenders.append(f"group {binding.group!r} -> role {binding.role!r}")
    if not offenders:
        return None
    return Problem(
        "UnknownRole",
        f"Unknown role in {'; '.join(offenders)}. Known roles: {', '.join(roles)}. "
        "The previous valid bindings stay in effect.",
    )


def _entry(spec: ScimConnectionSpec, name: str, token: TokenState, now: datetime) -> dict[str, Any]:
    return {
        "endpointPath": endpoint_path(name),
        "tokenHashes": token.token_hashes(now),
        "identityProvider": spec.identityProviderRef.name if spec.identityProviderRef else None,
        "defaultUserRole": spec.provisioning.defaultUserRole,
        "deprovisionAction": spec.provisioning.deprovisionAction,
        "userIdentifier": spec.provisioning.userIdentifier,
        "groupBindings": {b.group: b.role for b in spec.groupBindings},
        "unboundGroupRole": spec.unboundGroupRole,
    }


def reconcile_scim_connection(
    snap: Snapshot,
    token: TokenState | None,
    idp: IdPState | None,
    previous_entry: dict[str, Any] | None,
    settings: Settings,
    now: datetime,
) -> KindResult:
    """Status and bundle entry of one ScimConnection."""
    status: dict[str, Any] = {
        "endpointURL": base_url(_idp_base(snap, idp), settings) + endpoint_path(snap.name),
        "tokenSecretRef": {"name": token_secret_name(snap), "key": "token"},
    }
    checks: list[Check] = []
    try:
        spec = ScimConnectionSpec.model_validate(snap.spec)
    except ValidationError as exc:
        invalid = spec_problem(exc)
        checks.append(Check(BINDINGS_VALID, False, invalid.reason, invalid.message))
        return finish(snap, status, checks, Outcome(Phase.STALLED, invalid.reason, invalid.message),
                       _keep_bindings(previous_entry, token, now), now)

    checks.append(_token_status(snap, spec, token, now, status))
    problem = bindings_problem(spec, settings.roles)
    if problem is None:
        checks.append(Check(BINDINGS_VALID, True, "Valid", f"{len(spec.groupBindings)} group binding(s)."))
    else:
        checks.append(Check(BINDINGS_VALID, False, problem.reason, problem.message))

    ref = spec.identityProviderRef.name if spec.identityProviderRef else None
    entry: dict[str, Any] | None = None
    if token is not None and (ref is None or (idp is not None and idp.serving)):
        entry = _entry(spec, snap.name, token, now) if problem is None else _keep_bindings(previous_entry, token, now)

    if problem is not None:
        outcome = Outcome(Phase.STALLED, problem.reason, problem.message)
    elif ref is not None and (idp is None or not idp.exists):
        outcome = Outcome(Phase.PROGRESSING, "IdentityProviderNotFound",
                          f"Waiting for IdentityProvider {ref} in namespace {snap.namespace}.")
    elif ref is not None and idp is not None and not idp.ready and not idp.serving:
        outcome = Outcome(Phase.PROGRESSING, "IdentityProviderNotReady",
                          f"Waiting for IdentityProvider {ref} to be Ready ({idp.reason}).")
    elif token is None:
        outcome = Outcome(Phase.PROGRESSING, "IssuingToken", "Issuing the bearer token Secret.")
    else:
        outcome = Outcome(Phase.READY, "Ready",
                          f"Point the IdP's SCIM connector at {status['endpointURL']} with the token in Secret "
                          f"{token_secret_name(snap)}.")
    return finish(snap, status, checks, outcome, entry, now)


def _token_status(
    snap: Snapshot, spec: ScimConnectionSpec, token: TokenState | None, now: datetime, status: dict[str, Any]
) -> Check:
    """TokenIssued, and the token times in status (the previous token's only while it is accepted)."""
    if token is None:
        return Check(TOKEN_ISSUED, False, "IssuingToken", "Issuing the bearer token Secret.")
    status["tokenIssuedAt"] = rfc3339(token.issued_at)
    interval = parse_duration(spec.token.rotationInterval)
    if interval.total_seconds() > 0:
        status["tokenRotatesAt"] = rfc3339(token.issued_at + interval)
    if token.previous_sha256 and token.previous_expires_at and token_hash_live(token.previous_expires_at, now):
        status["previousTokenExpiresAt"] = rfc3339(token.previous_expires_at)
    return Check(TOKEN_ISSUED, True, "Issued", f"Read the token from Secret {token_secret_name(snap)} key token "
                 "and paste it into the IdP's provisioning settings.")


def _idp_base(snap: Snapshot, idp: IdPState | None) -> dict[str, Any]:
    # The endpoint lives on the same platform as the IdP's SP; a ScimConnection has no baseURL of its own.
    return {"serviceProvider": {"baseURL": getattr(idp, "base_url", None)}} if idp is not None else {}


def _keep_bindings(previous: dict[str, Any] | None, token: TokenState | None, now: datetime) -> dict[str, Any] | None:
    """The previous valid entry with the current token hashes: a bad edit must not break provisioning."""
    if previous is None or token is None:
        return None
    return {**previous, "tokenHashes": token.token_hashes(now)}

"""Observe an IdentityProvider: read its metadata or discovery document, its client secret, and issue
(or adopt, or renew) the SP signing key pair. Every failure becomes a Problem, never an exception."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import zlib
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from ..api.common import parse_duration
from ..api.identityprovider import IdentityProviderSpec, OIDCConfig, SAMLConfig
from ..contract import rfc3339
from ..oidc.discovery import DiscoveryError, OIDCProviderMetadata, count_signing_keys, discovery_url, parse_discovery
from ..reconcile.identityprovider import IdPObservation, SigningPair, needs_key_pair, signing_secret_name
from ..reconcile.model import Problem, Snapshot
from ..saml.certificates import load_certificate
from ..saml.errors import MetadataError
from ..saml.metadata import IdPMetadata, manual_idp_metadata, parse_idp_metadata
from ..saml.sp import generate_sp_signing_pair, sp_certificate_needs_renewal
from ..settings import Settings
from ..sources.errors import FetchError
from ..sources.metadata_cache import FetchResult, SharedMetadataCache
from ..sources.objectstore import KubeError, KubeUnavailable, ObjectStore
from .secrets import decode_secret_value, ensure_secret, managed_labels

log = logging.getLogger(__name__)

DEFAULT_METADATA_REFRESH = timedelta(hours=1)
# Problems the IdP's server causes and that go away by themselves; others need the user.
_PERMANENT_FETCH_REASONS = {"MetadataURLForbidden"}


def refresh_interval(spec: IdentityProviderSpec) -> timedelta | None:
    """How often the remote document is re-read; None when nothing remote is involved."""
    if spec.saml and spec.saml.metadata and spec.saml.metadata.url:
        raw = spec.saml.metadata.refreshInterval
        return parse_duration(raw) if raw else DEFAULT_METADATA_REFRESH
    if spec.oidc:
        return parse_duration(spec.oidc.refreshInterval)
    return None


async def observe_identity_provider(
    snap: Snapshot,
    store: ObjectStore,
    cache: SharedMetadataCache | None,
    previous: IdPObservation | None,
    settings: Settings,
    now: datetime,
    *,
    seed_entry: dict[str, Any] | None = None,
    max_age: timedelta | None = None,
) -> IdPObservation:
    """One read of everything the IdentityProvider depends on.

    `previous` carries the last good IdP forward (last-known-good); `seed_entry`, the IdP's entry in the
    existing bundle, stands in for it after an operator restart. `max_age` lets a shared URL answer from
    the cache when it was fetched recently by another IdentityProvider.
    """
    base = previous or _seeded(snap, seed_entry)
    raw_meta = snap.status.get("metadata")
    status_meta = dict(raw_meta) if isinstance(raw_meta, dict) else {}
    base = replace(base, generation=snap.generation, metadata=_status_metadata(base.metadata or status_meta))
    try:
        spec = IdentityProviderSpec.model_validate(snap.spec)
    except ValidationError:
        return base  # the reconcile reports the invalid spec itself
    interval = refresh_interval(spec)
    if previous is None and interval is not None and _restorable_after_restart(snap, base):
        # After a restart the bundle's entry is served at once and the document re-read at a stable point
        # within the first refresh interval: no burst of fetches, and no status rewrite, when the pod restarts.
        base = replace(base, succeeded_at=now, attempted_at=now - interval + _restart_offset(snap.uid, interval))
        if spec.oidc is not None:
            return await _with_client_secret(snap, spec.oidc, store, base)
        return await _with_signing(snap, spec, store, base, settings, now)
    if spec.saml is not None:
        return await _observe_saml(snap, spec.saml, store, cache, base, settings, now, max_age)
    assert spec.oidc is not None
    return await _observe_oidc(snap, spec.oidc, store, cache, base, settings, now, max_age)


def _status_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The `status.metadata` fields; older fields (attempt times, ETag) are dropped once, on upgrade."""
    return {k: v for k, v in meta.items() if k in ("sha256", "lastChangeTime") and v is not None}


def _restorable_after_restart(snap: Snapshot, base: IdPObservation) -> bool:
    """The status says this generation resolved, and the bundle holds its entry."""
    if base.saml is None and base.oidc is None:
        return False
    resolved = next((c for c in snap.status.get("conditions") or []
                     if isinstance(c, dict) and c.get("type") == "MetadataResolved"), {})
    return resolved.get("status") == "True" and resolved.get("observedGeneration") == snap.generation


def _restart_offset(uid: str, interval: timedelta) -> timedelta:
    """A stable per-object point in the interval, so a thousand IdPs don't all re-read right after a restart."""
    return interval * ((zlib.crc32(uid.encode()) % 1000) / 1000)


def _counted(obs: IdPObservation, result: str) -> dict[str, int]:
    return {**obs.fetches, result: obs.fetches.get(result, 0) + 1}


def _succeeded(obs: IdPObservation, meta: dict[str, Any], document_sha: str, now: datetime) -> dict[str, Any]:
    """status.metadata after a good read: `lastChangeTime` moves only when the document's content changed."""
    meta = dict(meta)
    if document_sha != meta.get("sha256") or "lastChangeTime" not in meta:
        meta["lastChangeTime"] = rfc3339(now)
    meta["sha256"] = document_sha
    return meta


async def _with_signing(
    snap: Snapshot, spec: IdentityProviderSpec, store: ObjectStore, obs: IdPObservation, settings: Settings,
    now: datetime,
) -> IdPObservation:
    if spec.saml is not None and needs_key_pair(spec.saml):
        return await _ensure_signing_pair(snap, store, obs, settings, now)
    return obs


def _seeded(snap: Snapshot, entry: dict[str, Any] | None) -> IdPObservation:
    """Rebuild the last good IdP from the bundle written before a restart, so a failing first read
    after the restart does not take a working login away."""
    empty = IdPObservation(generation=snap.generation)
    if not entry:
        return empty
    try:
        if entry.get("protocol") == "SAML":
            idp = (entry.get("saml") or {}).get("idp") or {}
            multi = (idp.get("x509certMulti") or {}).get("signing") or []
            certs = multi or ([idp["x509cert"]] if idp.get("x509cert") else [])
            sso = idp.get("singleSignOnService") or {}
            slo = idp.get("singleLogoutService") or {}
            saml = IdPMetadata(
                entity_id=idp["entityId"],
                sso_url=sso["url"],
                sso_binding=sso.get("binding", ""),
                slo_url=slo.get("url") or None,
                slo_binding=slo.get("binding") or None,
                signing_certificates=tuple(load_certificate(c) for c in certs),
                name_id_formats=(),
            )
            return replace(empty, saml=saml, resolved_generation=snap.generation, from_url=True)
        oidc = entry.get("oidc") or {}
        provider = OIDCProviderMetadata(
            issuer=oidc["issuer"],
            authorization_endpoint=oidc["authorizationEndpoint"],
            token_endpoint=oidc["tokenEndpoint"],
            jwks_uri=oidc["jwksURI"],
            userinfo_endpoint=oidc.get("userinfoEndpoint"),
            end_session_endpoint=oidc.get("endSessionEndpoint"),
            scopes_supported=(),
            id_token_signing_alg_values_supported=(),
        )
        return replace(empty, oidc=provider, client_secret=oidc.get("clientSecret"),
                       resolved_generation=snap.generation, from_url=True)
    except (KeyError, TypeError, MetadataError) as exc:
        log.warning("IdentityProvider %s/%s: the previous bundle entry is unreadable (%s); not reused",
                    snap.namespace, snap.name, type(exc).__name__)
        return empty


async def _fetch(
    cache: SharedMetadataCache | None, url: str, max_age: timedelta | None, now: datetime
) -> FetchResult:
    if cache is None:
        raise FetchError("MetadataUnreachable", "Remote metadata is not fetched in this mode (--offline).")
    return await cache.get(url, max_age=max_age or timedelta(0), now=now)


def _fetch_problem(exc: FetchError) -> Problem:
    return Problem(exc.reason, exc.message, transient=exc.reason not in _PERMANENT_FETCH_REASONS)


async def _observe_saml(
    snap: Snapshot,
    saml: SAMLConfig,
    store: ObjectStore,
    cache: SharedMetadataCache | None,
    base: IdPObservation,
    settings: Settings,
    now: datetime,
    max_age: timedelta | None,
) -> IdPObservation:
    obs = base if needs_key_pair(saml) else replace(base, signing=None, signing_problem=None)

    async def signed(result: IdPObservation) -> IdPObservation:
        # The SP key pair is issued (or renewed) only for an IdP that resolved, now or before: an IdP
        # whose metadata URL is refused, or not there yet, gets no Secret (nothing would ever use it).
        if needs_key_pair(saml) and result.saml is not None:
            return await _ensure_signing_pair(snap, store, result, settings, now)
        return result

    from_url = saml.manual is None and saml.metadata is not None and saml.metadata.url is not None \
        and saml.metadata.inline is None and saml.metadata.configMapRef is None
    if from_url:
        obs = replace(obs, attempted_at=now)
    try:
        idp, document_sha, fetch_result = await _read_saml_source(snap, saml, store, cache, settings, now, max_age)
    except FetchError as exc:
        return await signed(replace(obs, problem=_fetch_problem(exc), from_url=True,
                                    fetches=_counted(obs, exc.reason)))
    except MetadataError as exc:
        fetches = _counted(obs, exc.reason) if from_url else obs.fetches
        return await signed(replace(obs, problem=Problem(exc.reason, exc.message), from_url=from_url,
                                    fetches=fetches))
    except _Waiting as exc:
        return await signed(replace(obs, problem=exc.problem))

    resolved = replace(
        obs,
        saml=idp,
        oidc=None,
        resolved_generation=snap.generation,
        problem=None,
        metadata=_succeeded(obs, obs.metadata, document_sha, now),
        from_url=from_url,
        succeeded_at=now,
        fetches=_counted(obs, fetch_result) if fetch_result else obs.fetches,
    )
    return await signed(resolved)


async def _read_saml_source(
    snap: Snapshot, saml: SAMLConfig, store: ObjectStore, cache: SharedMetadataCache | None, settings: Settings,
    now: datetime, max_age: timedelta | None,
) -> tuple[IdPMetadata, str, str | None]:
    """The IdP's SAML values from manual settings, inline XML, a ConfigMap or a URL: (idp, sha256, and for a URL
    the fetch result, ok or not_modified).

    Raises FetchError, MetadataError, or _Waiting (a referenced ConfigMap is missing).
    """
    if saml.manual is not None:
        m = saml.manual
        idp = manual_idp_metadata(
            m.entityID, m.ssoURL, m.ssoBinding, m.sloURL or None, list(m.certificates),
            allow_http=settings.allow_insecure_http,
        )
        return idp, hashlib.sha256(m.model_dump_json().encode()).hexdigest(), None
    source = saml.metadata
    assert source is not None
    fetched = None
    if source.inline is not None:
        document: bytes = source.inline.encode()
    elif source.configMapRef is not None:
        document = await _read_configmap(snap, store, source.configMapRef.name, source.configMapRef.key)
    else:
        assert source.url is not None
        result = await _fetch(cache, source.url, max_age, now)
        document, fetched = result.body, "not_modified" if result.not_modified else "ok"
    # One parse serves both the signature check and the values read, so what is verified is what is used.
    idp = parse_idp_metadata(
        document, source.entityID, max_bytes=settings.metadata_max_bytes,
        allow_http=settings.allow_insecure_http,
        signing_fingerprint=source.signingCertificateFingerprint,
        now=now,
    )
    return idp, hashlib.sha256(document).hexdigest(), fetched


class _Waiting(Exception):
    """A referenced object is missing or incomplete: wait for it (transient)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


async def _read_configmap(snap: Snapshot, store: ObjectStore, name: str, key: str) -> bytes:
    try:
        configmap = await store.get("v1", "configmaps", snap.namespace, name)
    except KubeError as exc:
        raise _Waiting(Problem("ConfigMapUnreadable", f"Reading ConfigMap {name} failed: {exc.message}", True)) from exc
    if configmap is None:
        raise _Waiting(Problem("ConfigMapNotFound", f"Waiting for ConfigMap {name} in namespace {snap.namespace}.",
                               True))
    value = (configmap.get("data") or {}).get(key)
    if value is None:
        raise _Waiting(Problem("ConfigMapKeyNotFound", f"ConfigMap {name} has no key {key}.", True))
    return str(value).encode()


async def _ensure_signing_pair(
    snap: Snapshot, store: ObjectStore, obs: IdPObservation, settings: Settings, now: datetime
) -> IdPObservation:
    """Adopt the existing SP signing Secret, renew it before expiry, or issue one."""
    name = signing_secret_name(snap.name)

    async def render() -> dict[str, str]:
        # RSA key generation takes ~100 ms of CPU: off the event loop, so watches and writes go on.
        cert, key = await asyncio.to_thread(
            generate_sp_signing_pair, f"{snap.name}.{snap.namespace} keyplane SP", now,
            settings.sp_certificate_validity,
        )
        return {"tls.crt": cert, "tls.key": key}

    def usable(data: dict[str, str]) -> bool:
        cert = data.get("tls.crt", "")
        if not cert or not data.get("tls.key"):
            return False
        try:
            return not sp_certificate_needs_renewal(cert, now, settings.sp_certificate_renew_before)
        except (ValueError, MetadataError):
            return False

    try:
        secret = await ensure_secret(
            store, snap.namespace, name, render=render, usable=usable, secret_type="kubernetes.io/tls",
            labels=managed_labels("IdentityProvider", snap.name), annotations={}, owner=None,
        )
    except KubeError as exc:
        problem = Problem("SigningSecretUnwritable", f"Writing Secret {name} failed: {exc.message}", True)
        return replace(obs, signing_problem=problem)
    data = {k: decode_secret_value(v) for k, v in (secret.get("data") or {}).items()}
    return replace(obs, signing=SigningPair(data["tls.crt"], data["tls.key"]), signing_problem=None)


async def _with_client_secret(
    snap: Snapshot, oidc: OIDCConfig, store: ObjectStore, obs: IdPObservation
) -> IdPObservation:
    """Read the client secret by name (the operator does not watch Secrets); None when absent."""
    value: str | None = None
    if oidc.clientSecretRef is not None:
        ref = oidc.clientSecretRef
        try:
            secret = await store.get("v1", "secrets", snap.namespace, ref.name)
        except KubeUnavailable:
            raise  # the API is unreachable: retry, never conclude the secret is gone
        except KubeError:
            secret = None
        raw = ((secret or {}).get("data") or {}).get(ref.key)
        value = decode_secret_value(raw) if raw is not None else None
    return replace(obs, client_secret=value)


async def _observe_oidc(
    snap: Snapshot,
    oidc: OIDCConfig,
    store: ObjectStore,
    cache: SharedMetadataCache | None,
    base: IdPObservation,
    settings: Settings,
    now: datetime,
    max_age: timedelta | None,
) -> IdPObservation:
    obs = await _with_client_secret(snap, oidc, store, replace(base, from_url=True, signing=None, attempted_at=now))
    try:
        result = await _fetch(cache, discovery_url(oidc.issuer), max_age, now)
        provider = parse_discovery(result.body, oidc.issuer, allow_http=settings.allow_insecure_http)
        jwks = await _fetch(cache, provider.jwks_uri, max_age, now)
        count_signing_keys(jwks.body)
    except FetchError as exc:
        return replace(obs, problem=_fetch_problem(exc), fetches=_counted(obs, exc.reason))
    except DiscoveryError as exc:
        return replace(obs, problem=Problem(exc.reason, exc.message), fetches=_counted(obs, exc.reason))
    return replace(
        obs, oidc=provider, saml=None, resolved_generation=snap.generation, problem=None,
        metadata=_succeeded(obs, obs.metadata, result.sha256, now), succeeded_at=now,
        fetches=_counted(obs, "not_modified" if result.not_modified and jwks.not_modified else "ok"),
    )

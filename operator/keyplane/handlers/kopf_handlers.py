"""Kopf wiring, kept thin: index the objects, observe on change or timer, schedule the namespace writer.

Handlers return nothing (Kopf would store results in status) and write no status themselves: the
namespace writer does, from the pure reconcile. Kopf's progress and diff-base live in annotations.
"""

from __future__ import annotations

import logging
import os
import random
import zlib
from datetime import timedelta
from typing import Any

import kopf

from .. import API_GROUP, API_VERSION
from ..api.common import parse_duration
from ..api.identityprovider import IdentityProviderSpec
from ..api.scimconnection import ScimConnectionSpec
from ..contract import token_hash_live
from ..observe.identityprovider import refresh_interval
from ..observe.secrets import OWNER_KIND_LABEL, OWNER_NAME_LABEL
from ..orchestrator import observe
from ..reconcile.model import KOPF_ANNOTATIONS_PREFIX, Snapshot
from ..reconcile.scimconnection import token_secret_name
from ..reconcile.ssodomain import claims_of
from ..runtime import Runtime
from ..saml.sp import sp_certificate_needs_renewal
from ..settings import Settings
from ..sources.objectstore import KubeError

log = logging.getLogger("keyplane.operator")

FINALIZER = "keyplane.dev/finalizer"
KOPF_PREFIX = KOPF_ANNOTATIONS_PREFIX.rstrip("/")
IDP = (API_GROUP, API_VERSION, "identityproviders")
SSOD = (API_GROUP, API_VERSION, "ssodomains")
SCIM = (API_GROUP, API_VERSION, "scimconnections")
# How often the per-object timers tick. Refresh and rotation times come from the specs; the tick only
# bounds how late they are noticed. Read once at import (Kopf's decorators need it): tests and the
# benchmarks shorten it through the environment.
TIMER_INTERVAL = float(os.environ.get("KEYPLANE_TIMER_INTERVAL", "60"))


def configure_kopf(settings: kopf.OperatorSettings, keyplane: Settings) -> None:
    """Keep Kopf's bookkeeping out of status, name the finalizer, and stop Kopf posting log Events."""
    settings.persistence.finalizer = FINALIZER
    # Kopf hides every annotation under its storage prefix from change detection, so its prefix must
    # not be keyplane.dev itself: users' keyplane.dev/rotate-token must still trigger the update handler.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.posting.enabled = False  # our own Events are posted on transitions, not per log line
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    settings.networking.error_backoffs = [1, 2, 5, 10, 30]
    # A timer tick in flight when its object is deleted (a metadata fetch, a Secret read) holds the finalizer;
    # Kopf re-checks whether it has exited only every `cancellation_polling` s (default 60): deleting an
    # IdentityProvider mid-refresh took a minute. The handlers are bounded (fetch and API timeouts).
    settings.background.cancellation_polling = 1
    if keyplane.peering_name:
        settings.peering.name = keyplane.peering_name
        settings.peering.priority = keyplane.priority
        settings.peering.mandatory = True
        settings.peering.standalone = False
    else:
        settings.peering.standalone = True


def runtime_of(memo: Any, kwargs: dict[str, Any]) -> Runtime:
    rt: Runtime = memo.runtime
    rt.capture_indexes(kwargs)
    return rt


# --- indexes: what the namespace writer reconciles from (no listing per event) -------------------------

@kopf.index(*IDP)
def idp_index(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, Snapshot]:
    return {namespace or "default": Snapshot.from_body(body)}


@kopf.index(*SSOD)
def ssod_index(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, Snapshot]:
    return {namespace or "default": Snapshot.from_body(body)}


@kopf.index(*SCIM)
def scim_index(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, Snapshot]:
    return {namespace or "default": Snapshot.from_body(body)}


@kopf.index(*SSOD)
def claims_index(body: kopf.Body, memo: Any, **_: Any) -> dict[Any, Any]:
    cluster = memo.runtime.settings.domain_scope == "Cluster"
    return dict(claims_of(Snapshot.from_body(body), cluster))


@kopf.index(*IDP)
def configmap_refs(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, str] | None:
    ref = (((body.get("spec") or {}).get("saml") or {}).get("metadata") or {}).get("configMapRef") or {}
    return {(namespace, ref["name"]): str(body["metadata"]["name"])} if ref.get("name") else None


# --- IdentityProvider ---------------------------------------------------------------------------------

def _jitter(uid: str, interval: timedelta) -> timedelta:
    """A stable per-object offset (up to 10%) so a thousand IdPs don't refresh in the same second."""
    return interval * ((zlib.crc32(uid.encode()) % 1000) / 10000)


async def _observe(rt: Runtime, snap: Snapshot, *, max_age: timedelta | None = None) -> None:
    """Observe on a change: an API failure is retried by Kopf (TemporaryError), never a crash."""
    try:
        await observe(rt, snap, max_age=max_age)
    except KubeError as exc:
        raise kopf.TemporaryError(f"{snap.kind} {snap.namespace}/{snap.name}: {exc}", delay=5) from exc
    rt.schedule_after(snap)


async def _observe_on_timer(rt: Runtime, snap: Snapshot, *, max_age: timedelta | None = None) -> None:
    """Observe on a timer tick: an API failure is logged and left to the next tick (Kopf retries timers
    that raise at once, which would hammer an API server that is already struggling)."""
    try:
        await observe(rt, snap, max_age=max_age)
    except KubeError as exc:
        log.warning("%s %s/%s: the API failed (%s); retrying on the next tick", snap.kind, snap.namespace,
                    snap.name, exc)
        return
    rt.schedule_after(snap)


@kopf.on.resume(*IDP)
@kopf.on.create(*IDP)
@kopf.on.update(*IDP)
async def identity_provider_changed(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    rt = runtime_of(memo, kwargs)
    snap = Snapshot.from_body(body)
    # A spec change is read fresh; a resume may use what another IdP sharing the URL just fetched.
    max_age = timedelta(seconds=30) if kwargs.get("reason") == "resume" else None
    await _observe(rt, snap, max_age=max_age)


@kopf.timer(*IDP, interval=TIMER_INTERVAL, initial_delay=TIMER_INTERVAL)
async def identity_provider_refresh(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    """Re-read remote documents when due (backing off on failure); re-evaluate expiry every tick."""
    rt = runtime_of(memo, kwargs)
    if rt.closing:  # the operator is stopping: the API client may be closed already
        return
    snap = Snapshot.from_body(body)
    key = (snap.namespace, snap.name)
    previous = rt.idp_observations.get(key)
    try:
        spec = IdentityProviderSpec.model_validate(snap.spec)
    except ValueError:
        return
    interval = refresh_interval(spec)
    if previous is None:
        return
    signing = previous.signing
    renew = signing is not None and sp_certificate_needs_renewal(
        signing.certificate_pem, rt.clock(), rt.settings.sp_certificate_renew_before
    )
    if renew or previous.signing_problem is not None:
        # The SP signing certificate is renewed before it expires, for every kind of metadata source.
        await _observe_on_timer(rt, snap, max_age=interval or timedelta(hours=1))
        return
    if interval is None:
        return
    last = previous.attempted_at
    wait = interval + _jitter(snap.uid, interval)
    if previous.problem is not None and previous.problem.transient:
        url = (spec.saml.metadata.url if spec.saml and spec.saml.metadata else None) or ""
        wait = min(wait, rt.cache.backoff(url) if url and rt.cache else timedelta(seconds=60))
    if last is None or rt.clock() >= last + wait:
        await _observe_on_timer(rt, snap, max_age=interval)


@kopf.on.event("", "v1", "configmaps")
async def configmap_changed(
    body: kopf.Body, namespace: str | None, name: str | None, memo: Any, **kwargs: Any
) -> None:
    """Re-read IdentityProviders whose metadata lives in this ConfigMap (found through an index); rewrite
    an SP metadata ConfigMap deleted by hand."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    if (kwargs.get("event") or {}).get("type") == "DELETED" and labels.get(OWNER_KIND_LABEL) == "IdentityProvider":
        rt = runtime_of(memo, kwargs)
        if rt.sp_metadata.pop((namespace or "", labels.get(OWNER_NAME_LABEL, "")), None) and rt.writer:
            rt.writer.schedule(namespace or "")
        return
    refs = kwargs.get("configmap_refs")
    if refs is None or (namespace, name) not in refs:
        return
    rt = runtime_of(memo, kwargs)
    idps = rt.indexes.get("idp_index")
    for idp_name in refs[(namespace, name)]:
        for snap in (idps or {}).get(namespace, []):
            if snap.name == idp_name:
                await _observe(rt, snap)


# --- SSODomain ----------------------------------------------------------------------------------------

@kopf.on.resume(*SSOD)
@kopf.on.create(*SSOD)
@kopf.on.update(*SSOD)
async def sso_domain_changed(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    await _observe(runtime_of(memo, kwargs), Snapshot.from_body(body))


@kopf.timer(*SSOD, interval=TIMER_INTERVAL, initial_delay=TIMER_INTERVAL,
            when=lambda spec, **_: (spec.get("verification") or {}).get("method") == "DNS")
async def sso_domain_verify(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    """Re-check pending DNS challenges; backs off (1 min doubling to 1 h) while they stay pending."""
    rt = runtime_of(memo, kwargs)
    if rt.closing:  # the operator is stopping: the API client may be closed already
        return
    snap = Snapshot.from_body(body)
    previous = rt.dns.get((snap.namespace, snap.name))
    pending = set(snap.spec.get("domains") or []) - set(previous.verified if previous else ())
    if not pending:
        return
    key = (snap.namespace, snap.name)
    now = rt.clock()
    next_check, attempts = rt.dns_schedule.get(key, (now, 0))
    if now < next_check:
        return
    await _observe_on_timer(rt, snap)
    delay = min(60 * 2**attempts, 3600) * (0.9 + random.random() * 0.2)
    rt.dns_schedule[key] = (now + timedelta(seconds=delay), attempts + 1)


# --- ScimConnection -----------------------------------------------------------------------------------

@kopf.on.resume(*SCIM)
@kopf.on.create(*SCIM)
@kopf.on.update(*SCIM)
async def scim_connection_changed(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    await _observe(runtime_of(memo, kwargs), Snapshot.from_body(body))


@kopf.timer(*SCIM, interval=TIMER_INTERVAL, initial_delay=TIMER_INTERVAL)
async def scim_connection_tick(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    """Scheduled rotation, a token Secret deleted by hand, and the end of a rotation overlap."""
    rt = runtime_of(memo, kwargs)
    if rt.closing:  # the operator is stopping: the API client may be closed already
        return
    snap = Snapshot.from_body(body)
    state = rt.tokens.get((snap.namespace, snap.name))
    now = rt.clock()
    try:
        interval = parse_duration(ScimConnectionSpec.model_validate(snap.spec).token.rotationInterval)
    except ValueError:  # an invalid spec: the reconcile reports it; nothing is due
        return
    due = state is None or (interval.total_seconds() > 0 and now >= state.issued_at + interval)
    overlap_ended = bool(state and state.previous_expires_at and not token_hash_live(state.previous_expires_at, now))
    if not (due or overlap_ended):
        try:  # a token Secret deleted by hand is reissued (the operator does not watch Secrets)
            due = await rt.kube.get("v1", "secrets", snap.namespace, token_secret_name(snap)) is None
        except KubeError as exc:
            log.warning("ScimConnection %s/%s: cannot read its token Secret (%s); retrying on the next tick",
                        snap.namespace, snap.name, exc)
            return
    if due or overlap_ended:
        await _observe_on_timer(rt, snap)


# --- deletion: drop contributions (the index forgets the object; the writer rewrites the bundle) ------

@kopf.on.delete(*IDP, optional=True)
@kopf.on.delete(*SSOD, optional=True)
@kopf.on.delete(*SCIM, optional=True)
async def object_deleted(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    _deleted(runtime_of(memo, kwargs), Snapshot.from_body(body))


def _deleted(rt: Runtime, snap: Snapshot) -> None:
    rt.forget(snap)
    rt.schedule_after(snap)


@kopf.on.event(*IDP)
@kopf.on.event(*SSOD)
@kopf.on.event(*SCIM)
async def object_event(body: kopf.Body, event: Any, memo: Any, **kwargs: Any) -> None:
    """A deletion that skipped the delete handler (finalizer removed by hand, operator down) still counts."""
    if event.get("type") != "DELETED":
        return
    _deleted(runtime_of(memo, kwargs), Snapshot.from_body(body))

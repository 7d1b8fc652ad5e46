"""Kopf wiring, kept thin: index the objects, observe on change, schedule the namespace writer.

Periodic checks are not Kopf timers (one per object costs memory): `sweep.py` walks the indexes.

Handlers return nothing (Kopf would store results in status) and write no status themselves: the
namespace writer does, from the pure reconcile. Kopf's progress and diff-base live in annotations.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import kopf

from .. import API_GROUP, API_VERSION
from ..observe.secrets import OWNER_KIND_LABEL, OWNER_NAME_LABEL
from ..orchestrator import observe
from ..packed import PackedSnapshot, identity_of, unpacked
from ..reconcile.model import KOPF_ANNOTATIONS_PREFIX, Snapshot
from ..reconcile.ssodomain import claims_of
from ..runtime import Runtime
from ..settings import Settings
from ..sources.objectstore import KubeError
from ..writer.status import forget_written_status_shown
from .diffbase import DigestDiffBaseStorage

log = logging.getLogger("keyplane.operator")

FINALIZER = "keyplane.dev/finalizer"
KOPF_PREFIX = KOPF_ANNOTATIONS_PREFIX.rstrip("/")
IDP = (API_GROUP, API_VERSION, "identityproviders")
SSOD = (API_GROUP, API_VERSION, "ssodomains")
SCIM = (API_GROUP, API_VERSION, "scimconnections")
WORKER_IDLE_SECONDS = 1.0


def configure_kopf(settings: kopf.OperatorSettings, keyplane: Settings) -> None:
    """Keep Kopf's bookkeeping out of status, name the finalizer, and stop Kopf posting log Events."""
    settings.persistence.finalizer = FINALIZER
    # Kopf hides every annotation under its storage prefix from change detection, so its prefix must
    # not be keyplane.dev itself: users' keyplane.dev/rotate-token must still trigger the update handler.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(prefix=KOPF_PREFIX)
    settings.posting.enabled = False  # our own Events are posted on transitions, not per log line
    # A Kopf worker keeps its object's last raw body until it has idled this long. Kopf's 5 s kept a few
    # thousand bodies alive at the end of a burst (~20 MB of the peak at N=1000, bench/README.md); a later
    # event of the object starts a new worker, which costs less than keeping one.
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    settings.networking.error_backoffs = [1, 2, 5, 10, 30]
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
# All handlers are `async def`: Kopf runs a plain function in its thread pool, a hop to a thread and back for
# every event of every object (a tenth of the operator's CPU in a burst, and a turn of the loop each).

def _indexed(body: kopf.Body, namespace: str | None, memo: Any) -> dict[str, PackedSnapshot]:
    snap = Snapshot.from_body(body)
    forget_written_status_shown(memo.runtime, snap)  # the index now holds what this process wrote
    return {namespace or "default": PackedSnapshot.of(snap)}


@kopf.index(*IDP)
async def idp_index(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> dict[str, PackedSnapshot]:
    return _indexed(body, namespace, memo)


@kopf.index(*SSOD)
async def ssod_index(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> dict[str, PackedSnapshot]:
    return _indexed(body, namespace, memo)


@kopf.index(*SCIM)
async def scim_index(body: kopf.Body, namespace: str | None, memo: Any, **_: Any) -> dict[str, PackedSnapshot]:
    return _indexed(body, namespace, memo)


@kopf.index(*SSOD)
async def claims_index(body: kopf.Body, memo: Any, **_: Any) -> dict[Any, Any]:
    cluster = memo.runtime.settings.domain_scope == "Cluster"
    return dict(claims_of(Snapshot.from_body(body), cluster))


@kopf.index(*IDP)
async def configmap_refs(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, str] | None:
    ref = (((body.get("spec") or {}).get("saml") or {}).get("metadata") or {}).get("configMapRef") or {}
    return {(namespace, ref["name"]): str(body["metadata"]["name"])} if ref.get("name") else None


# --- IdentityProvider ---------------------------------------------------------------------------------

async def _observe(rt: Runtime, snap: Snapshot, *, max_age: timedelta | None = None) -> None:
    """Observe on a change: an API failure is retried by Kopf (TemporaryError), never a crash."""
    try:
        await observe(rt, snap, max_age=max_age)
    except KubeError as exc:
        raise kopf.TemporaryError(f"{snap.kind} {snap.namespace}/{snap.name}: {exc}", delay=5) from exc
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
        for entry in (idps or {}).get(namespace, []):
            if identity_of(entry).name == idp_name:
                await _observe(rt, unpacked(entry))


# --- SSODomain ----------------------------------------------------------------------------------------

@kopf.on.resume(*SSOD)
@kopf.on.create(*SSOD)
@kopf.on.update(*SSOD)
async def sso_domain_changed(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    await _observe(runtime_of(memo, kwargs), Snapshot.from_body(body))


# --- ScimConnection -----------------------------------------------------------------------------------

@kopf.on.resume(*SCIM)
@kopf.on.create(*SCIM)
@kopf.on.update(*SCIM)
async def scim_connection_changed(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    await _observe(runtime_of(memo, kwargs), Snapshot.from_body(body))


# --- deletion: drop contributions (the index forgets the object; the writer rewrites the bundle) ------
# Not optional, so Kopf keeps its finalizer on every object: a deletion is then seen before the object is
# gone, even across a watch gap (a re-list does not report objects deleted meanwhile), and a deleted IdP
# never lingers in a bundle. (Until the sweep replaced Kopf's timers, the timers were why it was there.)

@kopf.on.delete(*IDP)
@kopf.on.delete(*SSOD)
@kopf.on.delete(*SCIM)
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

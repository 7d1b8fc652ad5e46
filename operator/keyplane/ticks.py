"""Periodic per-object checks: what is due for one object at a tick (a refresh, a rotation, a DNS re-check).

No Kopf here: the sweeper (`sweep.py`) calls these with the objects' index snapshots. Each returns quietly
when nothing is due; an API failure is logged and left to the next tick, never raised.
"""

from __future__ import annotations

import logging
import random
import zlib
from datetime import timedelta

from .api.common import parse_duration
from .api.identityprovider import IdentityProviderSpec
from .api.scimconnection import ScimConnectionSpec
from .contract import token_hash_live
from .observe.identityprovider import refresh_interval
from .orchestrator import observe
from .reconcile.model import Snapshot
from .reconcile.scimconnection import token_secret_name
from .runtime import Runtime
from .saml.sp import sp_certificate_needs_renewal
from .sources.objectstore import KubeError

log = logging.getLogger("keyplane.operator")


def jitter(uid: str, interval: timedelta) -> timedelta:
    """A stable per-object offset (up to 10%) so a thousand IdPs don't refresh in the same second."""
    return interval * ((zlib.crc32(uid.encode()) % 1000) / 10000)


async def observe_on_tick(rt: Runtime, snap: Snapshot, *, max_age: timedelta | None = None) -> None:
    """Observe on a tick: an API failure is logged and left to the next tick (retrying at once would
    hammer an API server that is already struggling)."""
    try:
        await observe(rt, snap, max_age=max_age)
    except KubeError as exc:
        log.warning("%s %s/%s: the API failed (%s); retrying on the next tick", snap.kind, snap.namespace,
                    snap.name, exc)
        return
    rt.schedule_after(snap)


async def identity_provider_tick(rt: Runtime, snap: Snapshot) -> None:
    """Re-read remote documents when due (backing off on failure); renew the SP signing certificate."""
    previous = rt.idp_observations.get((snap.namespace, snap.name))
    if previous is None:  # not observed by this process yet: its change handler does that
        return
    try:
        spec = IdentityProviderSpec.model_validate(snap.spec)
    except ValueError:  # an invalid spec: the reconcile reports it; nothing is due
        return
    interval = refresh_interval(spec)
    signing = previous.signing
    renew = signing is not None and sp_certificate_needs_renewal(
        signing.certificate_pem, rt.clock(), rt.settings.sp_certificate_renew_before
    )
    if renew or previous.signing_problem is not None:
        # The SP signing certificate is renewed before it expires, for every kind of metadata source.
        await observe_on_tick(rt, snap, max_age=interval or timedelta(hours=1))
        return
    if interval is None:
        return
    last = previous.attempted_at
    wait = interval + jitter(snap.uid, interval)
    if previous.problem is not None and previous.problem.transient:
        url = (spec.saml.metadata.url if spec.saml and spec.saml.metadata else None) or ""
        wait = min(wait, rt.cache.backoff(url) if url and rt.cache else timedelta(seconds=60))
    if last is None or rt.clock() >= last + wait:
        await observe_on_tick(rt, snap, max_age=interval)


async def sso_domain_tick(rt: Runtime, snap: Snapshot) -> None:
    """Re-check pending DNS challenges; backs off (1 min doubling to 1 h) while they stay pending."""
    if (snap.spec.get("verification") or {}).get("method") != "DNS":
        return
    key = (snap.namespace, snap.name)
    previous = rt.dns.get(key)
    pending = set(snap.spec.get("domains") or []) - set(previous.verified if previous else ())
    if not pending:
        return
    now = rt.clock()
    next_check, attempts = rt.dns_schedule.get(key, (now, 0))
    if now < next_check:
        return
    await observe_on_tick(rt, snap)
    delay = min(60 * 2**attempts, 3600) * (0.9 + random.random() * 0.2)
    rt.dns_schedule[key] = (now + timedelta(seconds=delay), attempts + 1)


async def scim_connection_tick(rt: Runtime, snap: Snapshot) -> None:
    """Scheduled rotation, a token Secret deleted by hand, and the end of a rotation overlap."""
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
        await observe_on_tick(rt, snap)


TICKS = {
    "IdentityProvider": identity_provider_tick,
    "SSODomain": sso_domain_tick,
    "ScimConnection": scim_connection_tick,
}

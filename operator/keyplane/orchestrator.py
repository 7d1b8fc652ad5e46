"""The one observe → reconcile → write pass, shared by the operator and `keyplane render`.

- `observe(runtime, snap)`: the I/O for one object (fetch metadata, read referenced objects, issue or
  rotate owned Secrets, look up DNS), recorded in the runtime. Kopf handlers call it on change and on
  timers; render calls it once per input object.
- `flush_namespace(runtime, namespace)`: the pure `reconcile_namespace` over every object of the
  namespace and what was observed, then the writes, in the order a user may observe them (DESIGN.md,
  "What a user sees, in order"): SP metadata ConfigMaps and the bundle Secret first, then statuses, then
  Events. A status therefore never reports what the bundle does not carry yet. The operator's namespace
  writer calls it debounced; render calls it once per namespace.
No Kopf here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from .observe.identityprovider import observe_identity_provider
from .observe.scimconnection import observe_scim_connection
from .observe.ssodomain import observe_sso_domain
from .reconcile.model import Snapshot
from .reconcile.namespace import reconcile_namespace
from .runtime import Runtime
from .writer.bundle import write_bundle
from .writer.concurrency import concurrently
from .writer.events import post_event
from .writer.rollout import roll_consumers
from .writer.spmetadata import write_sp_metadata
from .writer.status import plan_status_writes, with_written_status, write_statuses


async def observe(runtime: Runtime, snap: Snapshot, *, max_age: timedelta | None = None) -> None:
    """Observe one object and record the result; raises KubeError when the API fails a needed read/write."""
    key = (snap.namespace, snap.name)
    if snap.kind == "IdentityProvider":
        previous = runtime.idp_observations.get(key)
        seed = None
        if previous is None:  # first read since start: the bundle's entry is the last good config
            bundle = await runtime.current_bundle(snap.namespace)
            seed = ((bundle or {}).get("identityProviders") or {}).get(snap.name)
        runtime.observed(snap)
        runtime.idp_observations[key] = await observe_identity_provider(
            snap, runtime.kube, runtime.cache, previous, runtime.settings, runtime.clock(),
            seed_entry=seed, max_age=max_age,
        )
    elif snap.kind == "ScimConnection":
        state, events = await observe_scim_connection(snap, runtime.kube, runtime.clock())
        runtime.observed(snap)
        runtime.tokens[key] = state
        if runtime.post_events:
            for event in events:
                await post_event(runtime.kube, snap, event, runtime.clock())
    else:
        runtime.observed(snap)
        runtime.dns[key] = await observe_sso_domain(snap, runtime.resolver, runtime.dns.get(key))


def unobserved(runtime: Runtime, snap: Snapshot) -> bool:
    """Not observed since start (or, for an IdP, not since its last spec change)."""
    key = (snap.namespace, snap.name)
    if snap.kind == "IdentityProvider":
        obs = runtime.idp_observations.get(key)
        return obs is None or obs.generation != snap.generation
    if snap.kind == "ScimConnection":
        return key not in runtime.tokens
    return key not in runtime.dns


def _in_bundle(snap: Snapshot, bundle: Mapping[str, Any] | None) -> bool:
    """Whether the bundle carries configuration of this object (which a pass without it would drop)."""
    bundle = bundle or {}
    if snap.kind == "IdentityProvider":
        return snap.name in (bundle.get("identityProviders") or {})
    if snap.kind == "ScimConnection":
        return snap.name in (bundle.get("scim") or {})
    domains = snap.spec.get("domains")
    return any(d in (bundle.get("domains") or {}) for d in domains if isinstance(d, str)) \
        if isinstance(domains, list) else False


def _idp_ref(snap: Snapshot) -> str | None:
    ref = snap.spec.get("identityProviderRef")
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return name if isinstance(name, str) else None


def held_back(runtime: Runtime, snaps: list[Snapshot], bundle: Mapping[str, Any] | None) -> set[tuple[str, str]] | None:
    """What a pass leaves out: objects not observed yet that are new (nothing of them in the bundle), and
    new objects that refer to such an IdP. None: no pass now, because an object not observed yet has
    configuration in the bundle (after a restart, or a spec change): a pass must never drop it.

    Without this, one new object that Kopf is slow to hand over (a burst elsewhere) held up the statuses of
    every other object of its namespace; waiting for all remains the rule for what the bundle carries."""
    live = [s for s in snaps if not s.deleting]
    pending = [s for s in live if unobserved(runtime, s)]
    if not pending:
        return set()
    pending_idps = {s.name for s in pending if s.kind == "IdentityProvider"}
    held = pending + [s for s in live if _idp_ref(s) in pending_idps and s not in pending]
    if any(_in_bundle(s, bundle) for s in held) or len(held) == len(live):
        return None
    return {(s.kind, s.name) for s in held}


async def flush_namespace(runtime: Runtime, namespace: str) -> None:
    """Reconcile one namespace and write what changed: config first, then status, then Events."""
    snaps = runtime.snapshots(namespace)
    previous_bundle = await runtime.current_bundle(namespace)
    held = held_back(runtime, snaps, previous_bundle)
    if held is None:
        return  # the object's observation schedules the next pass
    snaps = [with_written_status(runtime, s) for s in snaps if (s.kind, s.name) not in held]
    result = reconcile_namespace(runtime.namespace_inputs(namespace, snaps, previous_bundle),
                                 runtime.settings, runtime.clock())
    status_writes = plan_status_writes(runtime, snaps, result.results)
    # The writes below wait on the API; while every namespace's pass waits at once (a burst), full
    # snapshots here would be a second copy of the whole index (the index keeps them packed).
    snaps = [s.identity() for s in snaps]
    # Configuration first (the ConfigMaps and the bundle Secret, together), then the statuses that report it,
    # while the Deployments that consume a new bundle are rolled.
    written: list[str | None] = []

    async def bundle() -> None:
        written.append(await write_bundle(runtime, namespace, snaps, result.data, result.bundle))

    await concurrently(write_sp_metadata(runtime, namespace, snaps, result.bundle), bundle())
    digest = written[0]
    await concurrently(write_statuses(runtime, status_writes),
                       *([roll_consumers(runtime.kube, namespace, digest)] if digest else []))

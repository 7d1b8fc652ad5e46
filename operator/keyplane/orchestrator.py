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

from datetime import timedelta

from .observe.identityprovider import observe_identity_provider
from .observe.scimconnection import observe_scim_connection
from .observe.ssodomain import observe_sso_domain
from .reconcile.model import Snapshot
from .reconcile.namespace import reconcile_namespace
from .runtime import Runtime
from .writer.bundle import write_bundle
from .writer.events import post_event
from .writer.spmetadata import write_sp_metadata
from .writer.status import with_written_status, write_statuses


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


def ready_to_flush(runtime: Runtime, snaps: list[Snapshot]) -> bool:
    """Only write once every object has been observed since start, so a restart never writes a partial bundle."""
    for snap in snaps:
        if snap.deleting:
            continue
        key = (snap.namespace, snap.name)
        if snap.kind == "IdentityProvider":
            obs = runtime.idp_observations.get(key)
            if obs is None or obs.generation != snap.generation:
                return False
        elif (snap.kind == "ScimConnection" and key not in runtime.tokens) or (
            snap.kind == "SSODomain" and key not in runtime.dns
        ):
            return False
    return True


async def flush_namespace(runtime: Runtime, namespace: str) -> None:
    """Reconcile one namespace and write what changed: config first, then status, then Events."""
    snaps = runtime.snapshots(namespace)
    if not ready_to_flush(runtime, snaps):
        return
    snaps = [with_written_status(runtime, s) for s in snaps]
    previous_bundle = await runtime.current_bundle(namespace)
    result = reconcile_namespace(runtime.namespace_inputs(namespace, snaps, previous_bundle),
                                 runtime.settings, runtime.clock())
    await write_sp_metadata(runtime, namespace, snaps, result.bundle)
    await write_bundle(runtime, namespace, snaps, result.data, result.bundle)
    await write_statuses(runtime, namespace, snaps, result.results)

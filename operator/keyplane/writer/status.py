"""Writing each object's status (only when it changed) and posting the Events of its transitions."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..api.kinds import API_GROUP_VERSION, KINDS_BY_NAME
from ..mergepatch import merge_patch_between
from ..reconcile.model import Event, KindResult, Snapshot
from ..sources.objectstore import KubeError
from .events import post_event

if TYPE_CHECKING:
    from ..runtime import Runtime


@dataclass(frozen=True)
class StatusWrite:
    """What a pass does for one object once its configuration is written: patch its status, post Events."""

    target: Snapshot  # identity only (`Snapshot.identity`): the pass keeps no spec or status while it writes
    patch: dict[str, Any] | None  # None: the status is unchanged (or this process already wrote it)
    status: dict[str, Any]
    events: list[Event]


def plan_status_writes(
    runtime: Runtime, snaps: list[Snapshot], results: dict[tuple[str, str], KindResult]
) -> list[StatusWrite]:
    """Compare each result with the status the object has (or this process last wrote): pure, before any write."""
    by_key = {(s.kind, s.name): s for s in snaps}
    plans = []
    for (kind, name), outcome in results.items():
        snap = by_key[(kind, name)]
        written = runtime.written_status.get(snap.key)
        changed = outcome.status != dict(snap.status) and outcome.status != written
        plans.append(StatusWrite(target=snap.identity(), status=outcome.status, events=outcome.events,
                                 patch=merge_patch_between(snap.status, outcome.status) if changed else None))
    return plans


async def write_statuses(runtime: Runtime, plans: list[StatusWrite]) -> None:
    """Every status first, then the Events: a status is what `kubectl wait` and Argo CD wait for, and in a
    pass over many objects each Event posted between two statuses would hold back all that follow."""
    kube = runtime.kube
    announce: list[StatusWrite] = []
    for plan in plans:
        snap = plan.target
        if plan.patch is not None:
            try:
                await kube.patch_status(API_GROUP_VERSION, KINDS_BY_NAME[snap.kind].plural, snap.namespace,
                                        snap.name, plan.patch)
            except KubeError as exc:
                if exc.status == 404:
                    continue  # deleted meanwhile
                raise
            runtime.written_status[snap.key] = plan.status
        announce.append(plan)
    if runtime.post_events:
        for plan in announce:
            for event in plan.events:
                await post_event(kube, plan.target, event, runtime.clock())


def with_written_status(runtime: Runtime, snap: Snapshot) -> Snapshot:
    """The snapshot as of this process's own last status write (the index may not have caught up)."""
    if forget_written_status_shown(runtime, snap):
        return snap
    written = runtime.written_status.get(snap.key)
    return snap if written is None else replace(snap, status=written)


def forget_written_status_shown(runtime: Runtime, snap: Snapshot) -> bool:
    """Drop this process's copy of the status it wrote once `snap` (from the index) shows it; True then.

    Called as the index receives each object, not only at the next pass: after a burst there is no next
    pass, and 3000 objects kept ~5 MB of statuses twice.
    """
    written = runtime.written_status.get(snap.key)
    if written is None or written != snap.status:
        return False
    del runtime.written_status[snap.key]
    return True

"""Writing each object's status (only when it changed) and posting the Events of its transitions."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..api.kinds import API_GROUP_VERSION, KINDS_BY_NAME
from ..mergepatch import merge_patch_between
from ..reconcile.model import KindResult, Snapshot
from ..sources.objectstore import KubeError
from .events import post_event

if TYPE_CHECKING:
    from ..runtime import Runtime


async def write_statuses(
    runtime: Runtime, namespace: str, snaps: list[Snapshot], results: dict[tuple[str, str], KindResult]
) -> None:
    kube = runtime.kube
    by_key = {(s.kind, s.name): s for s in snaps}
    for (kind, name), outcome in results.items():
        snap = by_key[(kind, name)]
        written = runtime.written_status.get((kind, namespace, name))
        if outcome.status != dict(snap.status) and outcome.status != written:
            plural = KINDS_BY_NAME[kind].plural
            try:
                await kube.patch_status(API_GROUP_VERSION, plural, namespace, name,
                                        merge_patch_between(snap.status, outcome.status))
            except KubeError as exc:
                if exc.status == 404:
                    continue  # deleted meanwhile
                raise
            runtime.written_status[(kind, namespace, name)] = outcome.status
        if runtime.post_events:
            for event in outcome.events:
                await post_event(kube, snap, event, runtime.clock())


def with_written_status(runtime: Runtime, snap: Snapshot) -> Snapshot:
    """The snapshot as of this process's own last status write (the index may not have caught up)."""
    key = (snap.kind, snap.namespace, snap.name)
    written = runtime.written_status.get(key)
    if written is None:
        return snap
    if written == snap.status:
        # The index has caught up: it holds that status now, so the copy is dropped (3000 objects kept
        # ~5 MB of statuses twice).
        del runtime.written_status[key]
        return snap
    return replace(snap, status=written)

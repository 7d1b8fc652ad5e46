"""One sweep over the indexed objects instead of a Kopf timer per object.

A Kopf timer costs ~13 KB per object for the life of the process (its task, and the latest raw body it
keeps for its `body` argument): 40 MB at 3 000 objects, most of Keyplane's memory above a bare Kopf
operator. The sweeper walks Kopf's indexes instead. Each object gets a stable slot (a hash of its uid) in
the tick interval, so ticks are spread over the interval as per-object timers were, and each object is
checked once per interval. At most `concurrency` checks run at once; a slow one (a metadata fetch that
times out) never delays the others, and an object is never checked twice at the same time.

Like Kopf's timers (`initial_delay` = the interval), an object is first checked one interval after it was
created, and the first sweep starts one interval after the operator: its change or resume handler observes
it first. After that the checks are also the safety net for an object whose handler Kopf gave up on (Kopf
drops an event whose processing failed until the object changes again): a ScimConnection without a token
gets one, and the status it writes brings the object back to Kopf.

It stands down while `paused()` is true (Kopf's peering pause in HA mode: the indexes are stale there and
another replica acts) and once the operator is closing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta

from .contract import parse_time_or_none
from .packed import identity_of, unpacked
from .reconcile.model import Snapshot
from .runtime import Runtime

log = logging.getLogger("keyplane.operator")

Tick = Callable[[Runtime, Snapshot], Awaitable[None]]
INDEX_OF_KIND = {"IdentityProvider": "idp_index", "SSODomain": "ssod_index", "ScimConnection": "scim_index"}
SLOT_SECONDS = 1.0  # the sweep wakes this often (or once per interval if shorter) to check one slot


def slot_of(uid: str, slots: int) -> int:
    return zlib.crc32(uid.encode()) % slots


def _created(snap: Snapshot) -> datetime:
    """When the object was created; an unreadable time counts as long ago (checked at once)."""
    return parse_time_or_none(snap.creation_timestamp) or datetime.min.replace(tzinfo=UTC)


class Sweeper:
    """Calls `ticks[snap.kind](rt, snap)` once per `interval` seconds for every indexed object."""

    def __init__(self, rt: Runtime, ticks: Mapping[str, Tick], interval: float, *,
                 paused: Callable[[], bool] = lambda: False, concurrency: int = 20) -> None:
        self.rt = rt
        self.ticks = ticks
        self.interval = interval
        self.slot_seconds = min(SLOT_SECONDS, interval)
        self.slots = max(1, round(interval / self.slot_seconds))
        self.paused = paused
        self._limit = asyncio.Semaphore(concurrency)
        self._running: dict[tuple[str, str, str], asyncio.Task[None]] = {}
        self.checks = 0  # per-object checks started: what tests and the benchmark count

    def due(self, slot: int) -> Iterator[Snapshot]:
        """The objects whose turn is `slot`, from Kopf's live indexes (copied: they change under us)."""
        created_before = self.rt.clock() - timedelta(seconds=self.interval)
        for name in INDEX_OF_KIND.values():
            index = self.rt.indexes.get(name) or {}
            for namespace in list(index.keys()):
                for entry in list(index.get(namespace) or ()):
                    known = identity_of(entry)
                    if not known.deleting and slot_of(known.uid, self.slots) == slot \
                            and _created(known) <= created_before:
                        yield unpacked(entry)

    def standing_down(self) -> bool:
        return self.rt.closing or self.paused()

    def sweep_slot(self, slot: int) -> None:
        """Start the checks of one slot's objects (each in its own task, bounded by the semaphore)."""
        if self.standing_down():
            return
        for snap in self.due(slot):
            key = snap.key
            tick = self.ticks.get(snap.kind)
            if tick is None or key in self._running:  # the previous check of this object is still running
                continue
            self.checks += 1
            task = asyncio.create_task(self._check(tick, snap), name=f"keyplane-tick-{snap.kind}-{snap.name}")
            self._running[key] = task

    async def _check(self, tick: Tick, snap: Snapshot) -> None:
        try:
            async with self._limit:
                if self.standing_down():
                    return
                await tick(self.rt, snap)
        except asyncio.CancelledError:
            raise
        except Exception:  # one object's bug must not stop the others' refreshes
            log.exception("%s %s/%s: the periodic check failed; retrying on the next tick",
                          snap.kind, snap.namespace, snap.name)
        finally:
            self._running.pop(snap.key, None)
        if not self.indexed(snap):
            # Deleted while its check ran (no finalizer waits for a sweep): drop what the check recorded,
            # or a re-created namesake would start from the old object's observations.
            self.rt.forget(snap)

    def indexed(self, snap: Snapshot) -> bool:
        index = self.rt.indexes.get(INDEX_OF_KIND[snap.kind]) or {}
        return any(identity_of(s).uid == snap.uid for s in list(index.get(snap.namespace) or ()))

    async def run(self) -> None:
        """Forever: one slot per `slot_seconds`, on a fixed schedule (a late wake-up does not shift it)."""
        await asyncio.sleep(self.interval)
        started = time.monotonic()
        slot = 0
        while True:
            slot += 1
            await asyncio.sleep(max(0.0, started + slot * self.slot_seconds - time.monotonic()))
            self.sweep_slot(slot % self.slots)

    async def stop(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

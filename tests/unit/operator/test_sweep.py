"""The sweep that replaced Kopf's per-object timers: every object checked once per interval, spread over
it, never two checks of one object at once, nothing while paused or closing, and a failing check or a
deletion mid-check handled."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from keyplane.contract import rfc3339
from keyplane.reconcile.model import Snapshot
from keyplane.reconcile.scimtoken import TokenState
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from keyplane.sweep import Sweeper

KINDS = {"IdentityProvider": "idp_index", "SSODomain": "ssod_index", "ScimConnection": "scim_index"}


def snapshot(kind: str, namespace: str, name: str, *, deleting: bool = False) -> Snapshot:
    return Snapshot(kind=kind, namespace=namespace, name=name, uid=f"uid-{kind}-{namespace}-{name}", generation=1,
                    creation_timestamp="", spec={}, status={}, annotations={}, deleting=deleting)


def runtime_with(snaps: list[Snapshot]) -> Runtime:
    rt = Runtime(settings=Settings(liveness_endpoint=None), kube=None, cache=None, resolver=None)  # type: ignore[arg-type]
    for kind, index in KINDS.items():
        by_namespace: dict[str, list[Snapshot]] = {}
        for snap in snaps:
            if snap.kind == kind:
                by_namespace.setdefault(snap.namespace, []).append(snap)
        rt.indexes[index] = by_namespace
    return rt


def objects(count: int) -> list[Snapshot]:
    return [snapshot(kind, f"ns-{i % 7}", f"obj-{i}") for i in range(count) for kind in KINDS]


class Recorder:
    def __init__(self) -> None:
        self.seen: Counter[tuple[str, str, str]] = Counter()

    async def __call__(self, rt: Runtime, snap: Snapshot) -> None:
        self.seen[(snap.kind, snap.namespace, snap.name)] += 1


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def full_cycle(sweeper: Sweeper) -> None:
    for slot in range(sweeper.slots):
        sweeper.sweep_slot(slot)
        await settle()


async def test_every_object_is_checked_once_per_interval_spread_over_its_slots() -> None:
    snaps = objects(200)
    recorder = Recorder()
    sweeper = Sweeper(runtime_with(snaps), dict.fromkeys(KINDS, recorder), interval=60.0)
    assert sweeper.slots == 60  # one slot per second of the interval
    per_slot = []
    for slot in range(sweeper.slots):
        before = sum(recorder.seen.values())
        sweeper.sweep_slot(slot)
        await settle()
        per_slot.append(sum(recorder.seen.values()) - before)
    assert set(recorder.seen) == {(s.kind, s.namespace, s.name) for s in snaps}
    assert set(recorder.seen.values()) == {1}
    assert max(per_slot) < len(snaps) / 4, f"the checks bunch up in a few slots: {per_slot}"
    await full_cycle(sweeper)  # the next interval checks each once more, in the same slots
    assert set(recorder.seen.values()) == {2}


async def test_deleting_objects_are_left_to_the_delete_handler() -> None:
    recorder = Recorder()
    going = snapshot("IdentityProvider", "a", "going", deleting=True)
    sweeper = Sweeper(runtime_with([going, snapshot("IdentityProvider", "a", "staying")]),
                      dict.fromkeys(KINDS, recorder), interval=3.0)
    await full_cycle(sweeper)
    assert set(recorder.seen) == {("IdentityProvider", "a", "staying")}


@pytest.mark.parametrize("why", ["paused", "closing"])
async def test_nothing_is_checked_while_paused_or_closing(why: str) -> None:
    recorder = Recorder()
    rt = runtime_with(objects(20))
    paused = False
    sweeper = Sweeper(rt, dict.fromkeys(KINDS, recorder), interval=3.0, paused=lambda: paused)
    if why == "paused":
        paused = True
    else:
        rt.closing = True
    await full_cycle(sweeper)
    assert not recorder.seen and sweeper.checks == 0
    paused, rt.closing = False, False  # resumed (a paused replica becomes the active one again)
    await full_cycle(sweeper)
    assert len(recorder.seen) == 60


async def test_a_check_started_before_a_pause_stands_down_if_it_has_not_run_yet() -> None:
    recorder = Recorder()
    paused = False
    sweeper = Sweeper(runtime_with(objects(10)), dict.fromkeys(KINDS, recorder), interval=1.0,
                      paused=lambda: paused, concurrency=1)
    sweeper.sweep_slot(0)  # 30 checks started, waiting for the one slot
    paused = True
    await settle()
    assert sweeper.checks == 30 and not recorder.seen


async def test_a_slow_check_is_not_started_twice_and_does_not_hold_up_the_others() -> None:
    release = asyncio.Event()
    started: Counter[str] = Counter()

    async def slow_for_one(rt: Runtime, snap: Snapshot) -> None:
        started[snap.name] += 1
        if snap.name == "slow":
            await release.wait()

    snaps = [snapshot("IdentityProvider", "a", "slow"), snapshot("IdentityProvider", "a", "quick")]
    sweeper = Sweeper(runtime_with(snaps), dict.fromkeys(KINDS, slow_for_one), interval=1.0)
    for _ in range(3):
        sweeper.sweep_slot(0)
        await settle()
    assert started == {"slow": 1, "quick": 3}
    release.set()
    await settle()
    sweeper.sweep_slot(0)
    await settle()
    assert started["slow"] == 2
    await sweeper.stop()


async def test_a_failing_check_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    async def broken_for_one(rt: Runtime, snap: Snapshot) -> None:
        if snap.name == "broken":
            raise ValueError("a bug")
        recorder.seen[(snap.kind, snap.namespace, snap.name)] += 1

    recorder = Recorder()
    snaps = [snapshot("ScimConnection", "a", "broken"), snapshot("ScimConnection", "a", "fine")]
    sweeper = Sweeper(runtime_with(snaps), dict.fromkeys(KINDS, broken_for_one), interval=1.0)
    with caplog.at_level(logging.ERROR, logger="keyplane.operator"):
        sweeper.sweep_slot(0)
        await settle()
    assert recorder.seen == {("ScimConnection", "a", "fine"): 1}
    (record,) = [r for r in caplog.records if r.name == "keyplane.operator"]
    assert "ScimConnection a/broken" in record.getMessage() and "next tick" in record.getMessage()
    sweeper.sweep_slot(0)  # and it is tried again on the next one
    await settle()
    assert recorder.seen[("ScimConnection", "a", "fine")] == 2


async def test_an_object_deleted_during_its_check_leaves_no_observation_behind() -> None:
    """No finalizer waits for a sweep: a check that ends after the object is gone must not leave its
    observation for a re-created namesake to start from."""
    conn = snapshot("ScimConnection", "a", "okta")
    rt = runtime_with([conn])
    rt.observed(conn)
    deleted = asyncio.Event()

    async def check_outliving_the_object(rt: Runtime, snap: Snapshot) -> None:
        await deleted.wait()
        rt.tokens[(snap.namespace, snap.name)] = TokenState("ab" * 32, rt.clock(), None, None)

    sweeper = Sweeper(rt, dict.fromkeys(KINDS, check_outliving_the_object), interval=1.0)
    sweeper.sweep_slot(0)
    await settle()
    rt.indexes["scim_index"] = {}  # Kopf's index drops the object on its deletion
    deleted.set()
    await settle()
    assert ("a", "okta") not in rt.tokens


async def test_run_walks_the_slots_on_schedule() -> None:
    recorder = Recorder()
    sweeper = Sweeper(runtime_with(objects(5)), dict.fromkeys(KINDS, recorder), interval=0.05)
    task = asyncio.create_task(sweeper.run())
    try:
        await asyncio.wait_for(_until(lambda: len(recorder.seen) == 15 and min(recorder.seen.values()) >= 2), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_a_new_object_is_first_checked_one_interval_after_its_creation() -> None:
    """As Kopf's timers' initial delay: the create handler observes a new object, not a check racing it."""
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    made = {"new": now - timedelta(seconds=30), "old": now - timedelta(seconds=61), "unreadable": None}
    snaps = [dataclasses.replace(snapshot("ScimConnection", "a", name),
                                 creation_timestamp=rfc3339(at) if at else "not a time")
             for name, at in made.items()]
    recorder = Recorder()
    rt = runtime_with(snaps)
    rt.clock = lambda: now
    sweeper = Sweeper(rt, dict.fromkeys(KINDS, recorder), interval=60.0)
    await full_cycle(sweeper)
    assert {name for (_k, _ns, name) in recorder.seen} == {"old", "unreadable"}
    rt.clock = lambda: now + timedelta(seconds=31)
    await full_cycle(sweeper)
    assert recorder.seen[("ScimConnection", "a", "new")] == 1

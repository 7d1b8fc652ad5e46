"""The writer's own last status per object is kept only until the index shows it; a pass patches what changed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from keyplane.handlers.kopf_handlers import ssod_index
from keyplane.reconcile.model import Event, KindResult, Snapshot
from keyplane.writer.status import plan_status_writes, with_written_status, write_statuses

READY = {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": ""}]}
NOW = datetime(2026, 12, 2, tzinfo=UTC)
PENDING = {"conditions": [{"type": "Ready", "status": "False", "reason": "Pending", "message": ""}]}


def _snap(status: dict[str, Any], name: str = "d") -> Snapshot:
    return Snapshot.from_body({"kind": "SSODomain", "metadata": {"name": name, "namespace": "ns", "uid": "u"},
                               "spec": {}, "status": status})


def test_a_lagging_index_reads_as_the_status_just_written() -> None:
    runtime = SimpleNamespace(written_status={("SSODomain", "ns", "d"): READY})
    assert dict(with_written_status(runtime, _snap(PENDING)).status) == READY  # type: ignore[arg-type]
    assert ("SSODomain", "ns", "d") in runtime.written_status


def test_the_copy_is_dropped_once_the_index_has_caught_up() -> None:
    runtime = SimpleNamespace(written_status={("SSODomain", "ns", "d"): READY})
    assert dict(with_written_status(runtime, _snap(READY)).status) == READY  # type: ignore[arg-type]
    assert runtime.written_status == {}


def test_the_copy_is_dropped_as_soon_as_the_index_receives_it() -> None:
    """After a burst no pass follows to drop them: 3000 statuses stayed in memory twice."""
    runtime = SimpleNamespace(written_status={("SSODomain", "ns", "d"): READY})
    memo = SimpleNamespace(runtime=runtime)
    body = {"kind": "SSODomain", "metadata": {"name": "d", "namespace": "ns", "uid": "u"}, "spec": {}}
    asyncio.run(ssod_index(body={**body, "status": PENDING}, namespace="ns", memo=memo))
    assert ("SSODomain", "ns", "d") in runtime.written_status  # the index still lags
    asyncio.run(ssod_index(body={**body, "status": READY}, namespace="ns", memo=memo))
    assert runtime.written_status == {}


def test_a_pass_patches_only_what_changed_and_keeps_no_spec_or_status_while_it_writes() -> None:
    runtime = SimpleNamespace(written_status={("SSODomain", "ns", "written"): READY})
    snaps = [_snap(PENDING, name) for name in ("changed", "same", "written")]
    results = {("SSODomain", "changed"): KindResult(status=READY),
               ("SSODomain", "same"): KindResult(status=PENDING),
               ("SSODomain", "written"): KindResult(status=READY, events=[Event("Normal", "Ready", "ok")])}
    plans = {p.target.name: p for p in plan_status_writes(runtime, snaps, results)}  # type: ignore[arg-type]
    assert plans["changed"].patch == {"conditions": READY["conditions"]} and plans["changed"].status == READY
    assert plans["same"].patch is None and plans["written"].patch is None
    assert [e.reason for e in plans["written"].events] == ["Ready"]
    assert all(not p.target.spec and not p.target.status and p.target.uid == "u" for p in plans.values())


def test_a_pass_writes_every_status_before_any_event() -> None:
    """In a pass over many objects, an Event posted between two statuses held back all statuses after it:
    on a real API server under load, half a second a request."""
    calls: list[tuple[str, str]] = []

    class Recorder:
        async def patch_status(self, api_version: str, plural: str, namespace: str, name: str,
                               patch: dict[str, Any]) -> dict[str, Any]:
            calls.append(("status", name))
            return {}

        async def create(self, api_version: str, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
            calls.append(("event", body["involvedObject"]["name"]))
            return body

    runtime = SimpleNamespace(written_status={}, kube=Recorder(), post_events=True, clock=lambda: NOW)
    snaps = [_snap(PENDING, name) for name in ("a", "b", "c")]
    results = {("SSODomain", s.name): KindResult(status=READY, events=[Event("Normal", "Ready", "ready")])
               for s in snaps}
    plans = plan_status_writes(runtime, snaps, results)  # type: ignore[arg-type]
    asyncio.run(write_statuses(runtime, plans))  # type: ignore[arg-type]
    assert calls == [("status", "a"), ("status", "b"), ("status", "c"),
                     ("event", "a"), ("event", "b"), ("event", "c")]

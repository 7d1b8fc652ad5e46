"""The writer's own last status per object is kept only until the index shows it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from keyplane.reconcile.model import Snapshot
from keyplane.writer.status import with_written_status

READY = {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": ""}]}
PENDING = {"conditions": [{"type": "Ready", "status": "False", "reason": "Pending", "message": ""}]}


def _snap(status: dict[str, Any]) -> Snapshot:
    return Snapshot.from_body({"kind": "SSODomain", "metadata": {"name": "d", "namespace": "ns", "uid": "u"},
                               "spec": {}, "status": status})


def test_a_lagging_index_reads_as_the_status_just_written() -> None:
    runtime = SimpleNamespace(written_status={("SSODomain", "ns", "d"): READY})
    assert dict(with_written_status(runtime, _snap(PENDING)).status) == READY  # type: ignore[arg-type]
    assert ("SSODomain", "ns", "d") in runtime.written_status


def test_the_copy_is_dropped_once_the_index_has_caught_up() -> None:
    runtime = SimpleNamespace(written_status={("SSODomain", "ns", "d"): READY})
    assert dict(with_written_status(runtime, _snap(READY)).status) == READY  # type: ignore[arg-type]
    assert runtime.written_status == {}

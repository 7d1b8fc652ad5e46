"""Assemble a reconcile's KindResult: status with conditions, the entry, and the transition Events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .conditions import Check, Outcome, merge_conditions, standard_checks
from .events import transition_events
from .model import KindResult, Snapshot, compact


def finish(
    snap: Snapshot, status: dict[str, Any], checks: list[Check], outcome: Outcome, entry: Any, now: datetime
) -> KindResult:
    """Ready/Reconciling/Stalled from the outcome plus the kind's checks, stamped with the generation."""
    status = compact(status)
    status["observedGeneration"] = snap.generation
    status["conditions"] = merge_conditions(
        list(snap.status.get("conditions") or []), standard_checks(outcome) + checks,
        generation=snap.generation, now=now,
    )
    return KindResult(status=status, entry=entry, events=transition_events(dict(snap.status), status))

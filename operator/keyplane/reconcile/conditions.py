"""kstatus-compatible conditions: Ready, Reconciling, Stalled and the kind-specific ones.

kstatus (Flux, Helm 4 --wait, kpt) reads: observedGeneration behind -> InProgress; Reconciling=True ->
InProgress; Stalled=True -> Failed; Ready=True -> Current. A reconcile result therefore states one
`Outcome` (ready, progressing or stalled) and this module derives the three standard conditions from it.
`lastTransitionTime` only changes when a condition's status flips, so an unchanged world rewrites nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from ..contract import rfc3339

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"


class Phase(Enum):
    READY = "ready"  # the current generation is applied
    PROGRESSING = "progressing"  # transient: waiting for something that will likely come
    STALLED = "stalled"  # permanent until the user changes something


@dataclass(frozen=True)
class Check:
    """One kind-specific condition as a reconcile function computes it."""

    type: str
    ok: bool
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Outcome:
    """The overall verdict on an object."""

    phase: Phase
    reason: str
    message: str


def standard_checks(outcome: Outcome) -> list[Check]:
    """Ready, Reconciling and Stalled from one outcome."""
    ready = outcome.phase is Phase.READY
    return [
        Check(READY, ready, outcome.reason, outcome.message),
        Check(RECONCILING, outcome.phase is Phase.PROGRESSING, outcome.reason if not ready else "Reconciled",
              outcome.message if outcome.phase is Phase.PROGRESSING else ""),
        Check(STALLED, outcome.phase is Phase.STALLED, outcome.reason if not ready else "Reconciled",
              outcome.message if outcome.phase is Phase.STALLED else ""),
    ]


def merge_conditions(
    previous: list[dict[str, Any]] | None,
    checks: list[Check],
    *,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """New condition list: keeps lastTransitionTime of conditions whose status did not flip.

    Ready, Reconciling, Stalled come first, then the kind-specific ones in the order given;
    conditions that the reconcile no longer reports are dropped.
    """
    old = {c.get("type"): c for c in previous or [] if isinstance(c, dict)}
    stamp = rfc3339(now)
    result = []
    for check in checks:
        status = "True" if check.ok else "False"
        before = old.get(check.type)
        transition = before.get("lastTransitionTime") if before and before.get("status") == status else None
        result.append(
            {
                "type": check.type,
                "status": status,
                "reason": check.reason,
                "message": check.message,
                "lastTransitionTime": transition or stamp,
                "observedGeneration": generation,
            }
        )
    return result


def condition(status: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    """The condition of a type in a status dict, if any."""
    for cond in (status or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == type_:
            return cond
    return None


def is_true(status: dict[str, Any] | None, type_: str) -> bool:
    cond = condition(status, type_)
    return bool(cond and cond.get("status") == "True")

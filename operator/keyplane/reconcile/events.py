"""Events from condition transitions: posted once when a condition's status or reason changes."""

from __future__ import annotations

from typing import Any

from .conditions import RECONCILING, STALLED
from .model import Event

# Reconciling and Stalled restate Ready's reason; posting them too would only double the noise.
_SILENT = {RECONCILING, STALLED}
# Reasons that warn even while their condition is True.
_WARNING_WHEN_TRUE = {"ExpiringSoon", "LastKnownGood"}


def _by_type(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or [] if isinstance(c, dict) and "type" in c}


def transition_events(old_status: dict[str, Any], new_status: dict[str, Any]) -> list[Event]:
    """One Event per condition whose (status, reason) differs from before."""
    before = _by_type(old_status)
    events = []
    for type_, cond in _by_type(new_status).items():
        if type_ in _SILENT:
            continue
        previous = before.get(type_)
        if previous and (previous.get("status"), previous.get("reason")) == (cond["status"], cond["reason"]):
            continue
        healthy = cond["status"] == "True" and cond["reason"] not in _WARNING_WHEN_TRUE
        if previous is None and healthy and type_ != "Ready":
            continue  # a first, healthy kind-specific condition is no news
        ok = cond["status"] == "True" and cond["reason"] not in _WARNING_WHEN_TRUE
        message = cond.get("message") or f"{type_} is {cond['status']}"
        events.append(Event("Normal" if ok else "Warning", cond["reason"], message))
    return events

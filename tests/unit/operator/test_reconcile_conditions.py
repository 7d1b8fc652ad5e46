"""kstatus conditions: derived per phase, stable lastTransitionTime, observedGeneration, events on change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from keyplane_op_helpers import NOW

from keyplane.contract import rfc3339
from keyplane.reconcile.conditions import (
    Check,
    Outcome,
    Phase,
    is_true,
    merge_conditions,
    standard_checks,
)
from keyplane.reconcile.events import transition_events

LATER = NOW + timedelta(minutes=10)


def by_type(conditions: list[dict]) -> dict[str, dict]:
    return {c["type"]: c for c in conditions}


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (Phase.READY, {"Ready": "True", "Reconciling": "False", "Stalled": "False"}),
        (Phase.PROGRESSING, {"Ready": "False", "Reconciling": "True", "Stalled": "False"}),
        (Phase.STALLED, {"Ready": "False", "Reconciling": "False", "Stalled": "True"}),
    ],
)
def test_standard_conditions_per_phase(phase: Phase, expected: dict[str, str]) -> None:
    merged = merge_conditions(
        None, standard_checks(Outcome(phase, "Why", "What to do")), generation=4, now=NOW
    )
    assert [c["type"] for c in merged] == ["Ready", "Reconciling", "Stalled"]
    assert {c["type"]: c["status"] for c in merged} == expected
    conds = by_type(merged)
    assert conds["Ready"]["reason"] == "Why"
    # The True one of Reconciling/Stalled carries the reason and message; the others stay quiet.
    for type_ in ("Reconciling", "Stalled"):
        if expected[type_] == "True":
            assert (conds[type_]["reason"], conds[type_]["message"]) == ("Why", "What to do")
        else:
            assert conds[type_]["message"] == ""


def test_every_condition_has_the_metav1_fields_and_observed_generation() -> None:
    checks = [
        *standard_checks(Outcome(Phase.READY, "Ready", "ok")),
        Check("MetadataResolved", True, "Resolved"),
    ]
    for c in merge_conditions(None, checks, generation=7, now=NOW):
        assert set(c) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
        assert c["observedGeneration"] == 7
        assert c["lastTransitionTime"] == "2026-06-01T12:00:00Z"


def test_last_transition_time_changes_only_when_status_flips() -> None:
    first = merge_conditions(
        None, standard_checks(Outcome(Phase.PROGRESSING, "Resolving", "")), generation=1, now=NOW
    )
    # Same status, new reason, message and generation: the time stays, the rest follows.
    second = merge_conditions(
        first, standard_checks(Outcome(Phase.PROGRESSING, "Waiting", "more")), generation=2, now=LATER
    )
    assert by_type(second)["Reconciling"]["lastTransitionTime"] == rfc3339(NOW)
    assert by_type(second)["Reconciling"]["reason"] == "Waiting"
    assert all(c["observedGeneration"] == 2 for c in second)
    # Ready flips to True: Ready and Reconciling change time, Stalled (False before and after) keeps it.
    third = merge_conditions(
        second,
        standard_checks(Outcome(Phase.READY, "Ready", "")),
        generation=2,
        now=LATER + timedelta(minutes=1),
    )
    times = {c["type"]: c["lastTransitionTime"] for c in third}
    assert times["Ready"] == times["Reconciling"] == rfc3339(LATER + timedelta(minutes=1))
    assert times["Stalled"] == rfc3339(NOW)


def test_conditions_no_longer_reported_are_dropped_and_unknown_entries_ignored() -> None:
    previous = [
        {"type": "Obsolete", "status": "True", "reason": "X", "lastTransitionTime": "2020-01-01T00:00:00Z"},
        "garbage",
    ]
    merged = merge_conditions(previous, [Check("Ready", True, "Ready")], generation=1, now=NOW)  # type: ignore[list-item]
    assert [c["type"] for c in merged] == ["Ready"]


def test_is_true_reads_a_condition() -> None:
    status = {
        "conditions": merge_conditions(
            None, standard_checks(Outcome(Phase.READY, "Ready", "")), generation=1, now=NOW
        )
    }
    assert is_true(status, "Ready")
    assert not is_true(status, "Stalled")
    assert not is_true({}, "Ready")


def _status(checks: list[Check], previous: dict | None = None) -> dict:
    return {"conditions": merge_conditions((previous or {}).get("conditions"), checks, generation=1, now=NOW)}


def test_events_only_on_transitions() -> None:
    stalled = _status(standard_checks(Outcome(Phase.STALLED, "InvalidSpec", "Fix the spec: spec.x")))
    events = transition_events({}, stalled)
    assert [(e.type, e.reason, e.message) for e in events] == [
        ("Warning", "InvalidSpec", "Fix the spec: spec.x")
    ]
    # Unchanged: nothing to say.
    assert (
        transition_events(
            stalled, _status(standard_checks(Outcome(Phase.STALLED, "InvalidSpec", "")), stalled)
        )
        == []
    )
    # Recovery: one Normal event for Ready; Reconciling/Stalled do not double it.
    ready = _status(standard_checks(Outcome(Phase.READY, "Ready", "all good")), stalled)
    assert [(e.type, e.reason) for e in transition_events(stalled, ready)] == [("Normal", "Ready")]


def test_a_first_healthy_kind_condition_is_no_news_but_a_warning_reason_is() -> None:
    ready = standard_checks(Outcome(Phase.READY, "Ready", ""))
    healthy = _status([*ready, Check("CertificateValid", True, "Valid", "fine")])
    assert [e.reason for e in transition_events({}, healthy)] == ["Ready"]
    expiring = _status([*ready, Check("CertificateValid", True, "ExpiringSoon", "expires soon")])
    warnings = [e for e in transition_events({}, expiring) if e.type == "Warning"]
    assert [(e.reason, e.message) for e in warnings] == [("ExpiringSoon", "expires soon")]
    # Valid -> ExpiringSoon later is a change of reason: posted once.
    assert [
        e.reason
        for e in transition_events(
            healthy, _status([*ready, Check("CertificateValid", True, "ExpiringSoon", "x")], healthy)
        )
    ] == ["ExpiringSoon"]

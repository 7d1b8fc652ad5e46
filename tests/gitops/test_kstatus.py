"""The conditions the real reconcile writes, read by kstatus (Flux, Helm 4 `--wait`, kpt).

kstatus is Go, so its documented rules for custom resources are restated here as a small reference
function (sigs.k8s.io/cli-utils/pkg/kstatus/status, `checkGenericProperties` + `checkGeneration`):
deletionTimestamp -> Terminating; status.observedGeneration present and != metadata.generation ->
InProgress; a condition Reconciling=True -> InProgress; a condition Stalled=True -> Failed; otherwise
Current. The statuses come from `keyplane render` on real manifests.
"""

from __future__ import annotations

import copy
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from keyplane.render import EXIT_NOT_READY, EXIT_READY, run_render
from keyplane.settings import Settings

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)

CURRENT, IN_PROGRESS, FAILED, TERMINATING = "Current", "InProgress", "Failed", "Terminating"


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus' generic computation for a resource type it has no special rules for."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return TERMINATING
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        return IN_PROGRESS
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Reconciling" and cond.get("status") == "True":
            return IN_PROGRESS
        if cond.get("type") == "Stalled" and cond.get("status") == "True":
            return FAILED
    return CURRENT


def render(tmp_path: Path, *sources: Path | str) -> tuple[int, list[dict[str, Any]]]:
    """Run `keyplane render` in-process; returns the exit code and the Keyplane objects with status."""
    paths = []
    for i, source in enumerate(sources):
        if isinstance(source, str):
            path = tmp_path / f"input-{i}.yaml"
            path.write_text(source)
            source = path
        paths.append(str(source))
    out, err = io.StringIO(), io.StringIO()
    code = run_render(paths, Settings(), NOW, out, err, offline=True)
    docs = [d for d in yaml.safe_load_all(out.getvalue()) if d and d["apiVersion"].startswith("keyplane.dev/")]
    return code, docs


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[dict[str, Any]]]:
    return render(tmp_path_factory.mktemp("quickstart"), REPO / "examples" / "quickstart")


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_reference_function_follows_the_documented_order() -> None:
    conds = [{"type": "Reconciling", "status": "True"}, {"type": "Stalled", "status": "True"}]
    assert kstatus({"metadata": {"generation": 2}, "status": {"observedGeneration": 1, "conditions": conds}}) \
        == IN_PROGRESS
    assert kstatus({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": conds}}) \
        == IN_PROGRESS
    assert kstatus({"status": {"conditions": conds[1:]}}) == FAILED
    assert kstatus({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}) == TERMINATING


def test_ready_objects_are_current(quickstart: tuple[int, list[dict[str, Any]]]) -> None:
    code, docs = quickstart
    assert code == EXIT_READY
    assert {d["kind"] for d in docs} == {"IdentityProvider", "SSODomain", "ScimConnection"}
    for doc in docs:
        assert kstatus(doc) == CURRENT, doc["metadata"]["name"]
        assert doc["status"]["observedGeneration"] == doc["metadata"]["generation"]


UNKNOWN_ROLE = """
apiVersion: keyplane.dev/v1alpha1
kind: ScimConnection
metadata: {name: okta, namespace: team-a}
spec:
  groupBindings:
  - {group: platform-admins, role: Superuser}
"""

MISSING_IDP = """
apiVersion: keyplane.dev/v1alpha1
kind: SSODomain
metadata: {name: acme, namespace: team-a}
spec:
  domains: [acme.com]
  identityProviderRef: {name: does-not-exist}
"""


def test_permanent_problem_is_failed(tmp_path: Path) -> None:
    code, docs = render(tmp_path, UNKNOWN_ROLE)
    assert code == EXIT_NOT_READY
    scim = one(docs, "ScimConnection", "okta")
    assert kstatus(scim) == FAILED
    stalled = next(c for c in scim["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "UnknownRole"


def test_transient_problem_is_in_progress(tmp_path: Path) -> None:
    code, docs = render(tmp_path, MISSING_IDP)
    assert code == EXIT_NOT_READY
    ssod = one(docs, "SSODomain", "acme")
    assert kstatus(ssod) == IN_PROGRESS
    reconciling = next(c for c in ssod["status"]["conditions"] if c["type"] == "Reconciling")
    assert (reconciling["status"], reconciling["reason"]) == ("True", "IdentityProviderNotFound")


@pytest.mark.parametrize("kind", ["IdentityProvider", "SSODomain", "ScimConnection"])
def test_stale_generation_is_in_progress(quickstart: tuple[int, list[dict[str, Any]]], kind: str) -> None:
    _code, docs = quickstart
    obj = copy.deepcopy(next(d for d in docs if d["kind"] == kind))
    assert kstatus(obj) == CURRENT
    obj["metadata"]["generation"] += 1  # the user edited spec; the operator has not seen it yet
    assert kstatus(obj) == IN_PROGRESS


def test_every_condition_carries_the_observed_generation(tmp_path: Path) -> None:
    _code, docs = render(tmp_path, REPO / "examples" / "quickstart", UNKNOWN_ROLE, MISSING_IDP)
    for doc in docs:
        types = [c["type"] for c in doc["status"]["conditions"]]
        assert types[:3] == ["Ready", "Reconciling", "Stalled"]
        for cond in doc["status"]["conditions"]:
            assert cond["observedGeneration"] == doc["metadata"]["generation"]
            assert cond["status"] in {"True", "False"}
        # never both at once: kstatus would report the first it meets
        flags = {c["type"]: c["status"] for c in doc["status"]["conditions"]}
        assert not (flags["Reconciling"] == "True" and flags["Stalled"] == "True")
        assert (flags["Ready"] == "True") == (flags["Reconciling"] == flags["Stalled"] == "False")

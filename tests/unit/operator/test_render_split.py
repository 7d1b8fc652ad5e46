"""`keyplane render` makes the second half of the namespaces in a forked copy of itself (keyplane/forked.py):
the same bytes as one process, and the same bytes when the copy fails."""

from __future__ import annotations

import copy
import io
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from keyplane_op_helpers import QUICKSTART

from keyplane import forked
from keyplane import render as render_module
from keyplane.render import EXIT_READY, read_documents, run_render
from keyplane.settings import Settings

NOW = datetime(2026, 12, 1, tzinfo=UTC)
NAMESPACES = ("team-a", "team-b", "team-c", "team-d", "team-e")

pytestmark = pytest.mark.skipif(not forked.available(), reason="needs Linux and two CPUs (forked.available)")


def _quickstart_in(namespaces: tuple[str, ...]) -> list[dict[str, Any]]:
    """The quickstart's objects once per namespace (each namespace its own IdPs, domains and SCIM)."""
    docs = [d for d in read_documents([str(QUICKSTART)]) if d["kind"] != "Namespace"]
    out = []
    for namespace in namespaces:  # domains claimed per namespace (the default scope): no conflict
        for doc in copy.deepcopy(docs):
            doc["metadata"]["namespace"] = namespace
            out.append(doc)
    return out


def _render(tmp_path: Path, docs: list[dict[str, Any]], name: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    out, err = io.StringIO(), io.StringIO()
    code = run_render([str(path)], Settings(), NOW, out, err, offline=True)
    assert code == EXIT_READY, err.getvalue()
    return out.getvalue()


@pytest.fixture
def deterministic_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The objects with the Secrets of a first render fed back: tokens and keys adopted, so a second render
    gives the same bytes every time."""
    docs = _quickstart_in(NAMESPACES)
    monkeypatch.setattr(forked, "available", lambda: False)
    first = list(yaml.safe_load_all(_render(tmp_path, docs, "first")))
    monkeypatch.undo()
    return [d for d in first if d["kind"] == "Secret"] + docs


def test_two_processes_give_the_bytes_one_gives(tmp_path: Path, deterministic_input: list[dict[str, Any]],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    starts: list[int] = []
    start = forked.start
    monkeypatch.setattr(forked, "start", lambda work: starts.append(1) or start(work))
    split = _render(tmp_path, deterministic_input, "split")
    assert starts == [1]  # the copy was used
    monkeypatch.setattr(forked, "available", lambda: False)
    alone = _render(tmp_path, deterministic_input, "alone")
    assert split == alone
    rendered = list(yaml.safe_load_all(split))
    assert {d["metadata"]["namespace"] for d in rendered} == set(NAMESPACES)
    assert all(d["status"]["conditions"] for d in rendered if d["kind"] in ("IdentityProvider", "SSODomain"))


def test_when_the_copy_fails_this_process_makes_its_namespaces(
    tmp_path: Path, deterministic_input: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = os.getpid()
    run_namespaces = render_module._run_namespaces

    async def failing_in_the_copy(state: Any, namespaces: list[str]) -> None:
        if os.getpid() != parent:
            raise RuntimeError("the copy fails")
        await run_namespaces(state, namespaces)

    monkeypatch.setattr(render_module, "_run_namespaces", failing_in_the_copy)
    recovered = _render(tmp_path, deterministic_input, "recovered")
    monkeypatch.setattr(forked, "available", lambda: False)
    assert recovered == _render(tmp_path, deterministic_input, "alone")


def test_the_namespaces_are_cut_where_the_halves_hold_as_many_objects() -> None:
    def halves(sizes: dict[str, int]) -> tuple[list[str], list[str]]:
        snaps = [render_module.Snapshot.from_body(
            {"apiVersion": "keyplane.dev/v1alpha1", "kind": "SSODomain",
             "metadata": {"name": f"s{i}", "namespace": namespace, "uid": f"{namespace}-{i}"}, "spec": {}})
            for namespace, count in sizes.items() for i in range(count)]
        state = render_module._Render(None, snaps, None, None, sorted(sizes))  # type: ignore[arg-type]
        return render_module._halves(state)

    assert halves({"a": 5}) == (["a"], [])
    assert halves({"a": 1, "b": 1}) == (["a"], ["b"])
    assert halves({"a": 1, "b": 1, "c": 1, "d": 1}) == (["a", "b"], ["c", "d"])
    assert halves({"a": 10, "b": 1, "c": 1, "d": 1}) == (["a"], ["b", "c", "d"])
    assert halves({"a": 1, "b": 1, "c": 1, "d": 10}) == (["a", "b", "c"], ["d"])
    assert halves({"a": 2, "b": 4, "c": 4}) == (["a", "b"], ["c"])


def test_a_forked_copy_hands_back_what_its_work_returned_or_nothing_when_it_raised() -> None:
    assert forked.start(lambda: b"done " * 100_000).result() == b"done " * 100_000  # more than a pipe holds

    def fails() -> bytes:
        raise RuntimeError("no")

    assert forked.start(fails).result() is None

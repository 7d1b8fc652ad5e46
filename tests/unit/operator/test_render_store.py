"""render's in-memory store shares objects with the code that reads and writes them, instead of copying
them as an API server would; that is only right while nobody edits an object it has read or handed over.
These tests run whole renders (fresh, with state fed back, a token rotation, every example) through a store
that remembers a deep copy of everything it hands out or is given, and check nothing changed afterwards.
If one fails, the code that edited the object must copy it first (or build a new one)."""

from __future__ import annotations

import asyncio
import copy
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from keyplane_op_helpers import QUICKSTART

from keyplane import render as render_module
from keyplane.mergepatch import apply_merge_patch, copy_tree
from keyplane.render import MemoryStore, read_documents, render, run_render
from keyplane.settings import Settings

NOW = datetime(2026, 12, 1, tzinfo=UTC)
EXAMPLES = QUICKSTART.parent


class WatchfulStore(MemoryStore):
    """A MemoryStore that keeps (object, deep copy) for every object it hands out or is handed."""

    seen: list[tuple[Any, Any]] = []

    def note(self, obj: Any) -> Any:
        if obj is not None:
            WatchfulStore.seen.append((obj, copy.deepcopy(obj)))
        return obj

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.note(await super().get(api_version, plural, namespace, name))  # type: ignore[no-any-return]

    async def create(self, api_version: str, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.note(body)
        return self.note(await super().create(api_version, plural, namespace, body))  # type: ignore[no-any-return]

    async def patch(
        self, api_version: str, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        self.note(patch)
        return self.note(await super().patch(api_version, plural, namespace, name, patch))  # type: ignore[no-any-return]

    async def list(
        self, api_version: str, plural: str, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        found = await super().list(api_version, plural, namespace, label_selector=label_selector)
        return [self.note(o) for o in found]


@pytest.fixture
def watchful(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    WatchfulStore.seen = []
    monkeypatch.setattr(render_module, "MemoryStore", WatchfulStore)
    return WatchfulStore.seen


def render_text(docs: list[dict[str, Any]], now: datetime = NOW) -> str:
    result = asyncio.run(render(docs, Settings(), now, offline=True))
    out = io.StringIO()
    render_module.write_stream(result, out)
    return out.getvalue()


def assert_nothing_edited(seen: list[tuple[Any, Any]]) -> None:
    assert seen, "the store handed nothing out"
    edited = [after for after, before in seen if after != before]
    assert edited == []


def rendered_secrets(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d and d["kind"] == "Secret"]


def test_a_render_edits_neither_its_inputs_nor_what_the_store_shares(watchful: list[tuple[Any, Any]]) -> None:
    docs = read_documents([str(QUICKSTART)])
    before = copy.deepcopy(docs)
    first = render_text(docs)  # issues the token and the SP key, creates every output
    assert docs == before
    assert_nothing_edited(watchful)

    watchful.clear()
    state = rendered_secrets(first)
    assert render_text(docs + state) == first  # adopts the token, the key and the bundle
    assert_nothing_edited(watchful)

    watchful.clear()
    rotating = copy.deepcopy(docs)
    scim = next(d for d in rotating if d["kind"] == "ScimConnection")
    scim["metadata"]["annotations"] = {"keyplane.dev/rotate-token": "2026-12-01T00:00:00Z"}
    rotated = render_text(rotating + state)  # patches the token Secret and the bundle
    assert rotated != first
    assert_nothing_edited(watchful)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_rendering_an_example_edits_nothing_the_store_shares(
    example: str, watchful: list[tuple[Any, Any]]
) -> None:
    out, err = io.StringIO(), io.StringIO()
    run_render([str(EXAMPLES / example)], Settings(), NOW, out, err, offline=True)
    if watchful:
        assert_nothing_edited(watchful)


def test_render_output_has_no_yaml_aliases(tmp_path: Path) -> None:
    """Objects are shared, never repeated within one object: no `&id001` anchors in what kubectl reads."""
    out, err = io.StringIO(), io.StringIO()
    run_render([str(QUICKSTART)], Settings(), NOW, out, err, offline=True)
    assert "&id0" not in out.getvalue() and "*id0" not in out.getvalue()


def test_a_merge_patch_result_shares_nothing_mutable_with_the_patch() -> None:
    patch: dict[str, Any] = {"status": {"conditions": [{"type": "Ready", "status": "True"}], "gone": None}}
    target = {"spec": {"a": 1}, "status": {"gone": 1, "kept": 2}}
    merged = apply_merge_patch(target, patch)
    assert merged == {"spec": {"a": 1}, "status": {"conditions": [{"type": "Ready", "status": "True"}], "kept": 2}}
    assert target == {"spec": {"a": 1}, "status": {"gone": 1, "kept": 2}}  # a new object, the old one as it was
    patch["status"]["conditions"][0]["status"] = "False"
    patch["status"]["conditions"].append({})
    assert merged["status"]["conditions"] == [{"type": "Ready", "status": "True"}]


def test_copy_tree_copies_containers_and_shares_only_immutable_values() -> None:
    when = datetime(2026, 12, 1, tzinfo=UTC)
    mutable = {1, 2}
    tree = {"a": [{"b": "text", "n": 1, "f": 1.5, "t": True, "z": None, "when": when, "raw": b"x"}], "s": mutable}
    copied = copy_tree(tree)
    assert copied == tree
    assert copied is not tree and copied["a"] is not tree["a"] and copied["a"][0] is not tree["a"][0]
    assert copied["a"][0]["b"] is tree["a"][0]["b"] and copied["a"][0]["when"] is when
    assert copied["s"] == mutable and copied["s"] is not mutable  # any other type: deep-copied


def test_list_filters_by_kind_namespace_and_label_in_name_order() -> None:
    def deployment(ns: str, name: str, consumes: bool) -> dict[str, Any]:
        labels = {"keyplane.dev/consume-identity": "true"} if consumes else {}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns,
                                                                          "labels": labels}}

    async def scenario() -> list[list[str]]:
        store = MemoryStore()
        for ns, name, consumes in [("b", "web", True), ("a", "zeta", True), ("a", "alpha", True),
                                   ("a", "batch", False)]:
            await store.create("apps/v1", "deployments", ns, deployment(ns, name, consumes))
        await store.create("v1", "configmaps", "a", {"kind": "ConfigMap", "metadata": {"name": "alpha"}})
        selector = "keyplane.dev/consume-identity=true"
        return [[f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in found] for found in [
            await store.list("apps/v1", "deployments", "a"),
            await store.list("apps/v1", "deployments", "a", label_selector=selector),
            await store.list("apps/v1", "deployments", None, label_selector=selector),
            await store.list("apps/v1", "deployments", "c"),
        ]]

    assert asyncio.run(scenario()) == [["a/alpha", "a/batch", "a/zeta"], ["a/alpha", "a/zeta"],
                                       ["a/alpha", "a/zeta", "b/web"], []]

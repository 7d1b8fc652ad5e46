"""render's in-memory store hands out copies, as an API server would: a caller that edits what it read or
wrote never changes what the store holds (and so what render prints)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from keyplane.mergepatch import apply_merge_patch, copy_tree
from keyplane.render import MemoryStore


def secret(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ns", "labels": {"a": "1"}},
            "data": {"k": "dg=="}, "list": [{"x": [1, 2]}]}


def vandalise(obj: dict[str, Any]) -> None:
    obj["metadata"]["labels"]["a"] = "changed"
    obj["data"]["k"] = "changed"
    obj["list"][0]["x"].append(3)
    obj["list"].append("new")


def test_what_the_store_returns_or_was_given_can_be_edited_without_changing_it() -> None:
    async def scenario() -> MemoryStore:
        store = MemoryStore()
        given = secret("s")
        vandalise(await store.create("v1", "secrets", "ns", given))
        vandalise(given)
        vandalise(await store.get("v1", "secrets", "ns", "s") or {})
        (listed,) = await store.list("v1", "secrets", "ns")
        vandalise(listed)
        vandalise(await store.patch("v1", "secrets", "ns", "s", {"metadata": {"annotations": {"b": "2"}}}))
        return store

    store = asyncio.run(scenario())
    held = store.objects[store.key("v1", "secrets", "ns", "s")]
    expected = secret("s")
    expected["metadata"]["annotations"] = {"b": "2"}
    assert held == expected


def test_copy_tree_copies_containers_and_shares_only_immutable_values() -> None:
    when = datetime(2026, 12, 1, tzinfo=UTC)
    mutable = {1, 2}
    tree = {"a": [{"b": "text", "n": 1, "f": 1.5, "t": True, "z": None, "when": when, "raw": b"x"}], "s": mutable}
    copied = copy_tree(tree)
    assert copied == tree
    assert copied is not tree and copied["a"] is not tree["a"] and copied["a"][0] is not tree["a"][0]
    assert copied["a"][0]["b"] is tree["a"][0]["b"] and copied["a"][0]["when"] is when
    assert copied["s"] == mutable and copied["s"] is not mutable  # any other type: deep-copied


def test_a_merge_patch_result_shares_nothing_mutable_with_the_patch() -> None:
    patch: dict[str, Any] = {"status": {"conditions": [{"type": "Ready", "status": "True"}], "gone": None}}
    merged = apply_merge_patch({"spec": {"a": 1}, "status": {"gone": 1, "kept": 2}}, patch)
    assert merged == {"spec": {"a": 1}, "status": {"conditions": [{"type": "Ready", "status": "True"}], "kept": 2}}
    patch["status"]["conditions"][0]["status"] = "False"
    patch["status"]["conditions"].append({})
    assert merged["status"]["conditions"] == [{"type": "Ready", "status": "True"}]

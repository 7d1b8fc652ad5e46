"""JSON merge patches (RFC 7386): applying one, and computing the one that turns a document into another."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

# What a YAML or JSON document holds besides dicts and lists; all immutable, so shared, never copied.
_ATOMS = frozenset({str, int, float, bool, type(None), bytes, datetime, date})


def copy_tree(value: Any) -> Any:
    """A copy of a JSON or YAML document that shares nothing mutable with it: `copy.deepcopy` for the
    plain dict/list/scalar trees documents are, without deepcopy's per-object dispatch and memo (a third
    of `keyplane render`'s reconcile time was deepcopy). Unlike deepcopy, an object occurring twice in
    the tree (a YAML alias) is copied twice. Values of other types are deep-copied."""
    kind = type(value)
    if kind is dict:
        return {key: copy_tree(item) for key, item in value.items()}
    if kind is list:
        return [copy_tree(item) for item in value]
    if kind in _ATOMS:
        return value
    return copy.deepcopy(value)


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """Dicts merge recursively, ``null`` deletes a key, anything else replaces (with a copy)."""
    if not isinstance(patch, Mapping):
        return copy_tree(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def merge_patch_between(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch from old to new: removed keys (at any depth) become null, lists are replaced."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = merge_patch_between(before, value)
        else:
            patch[key] = value
    return patch

"""Kopf's diff base as a digest: the last handled essence's SHA-256 instead of a copy of it.

Kopf decides "created, changed or unchanged" by comparing an object with the essence (spec, labels,
annotations) it last handled, which `AnnotationsDiffBaseStorage` keeps as a JSON copy in an annotation. For
an IdentityProvider with inline metadata that copy doubles the object: every watch event, every queued
event and every patch carries the document twice, and next to `kubectl apply`'s own copy
(last-applied-configuration) a metadata document over ~120 KB pushes the object's annotations past the API
server's 256 KiB limit, so Kopf cannot patch it at all. Keyplane's
handlers never read Kopf's `old`/`diff` (they re-read the whole object), so a digest answers the only
question asked: did the essence change since it was last handled?
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, cast

import kopf

DIGEST_KEY = "last-handled-digest"
LEGACY_KEY = "last-handled-configuration"  # the JSON copy earlier Keyplane versions kept (as plain Kopf does)
CHANGED = "keyplane.dev/changed-since"  # in the stand-in for a changed essence; never in a real one


def essence_digest(essence: Any, prefix: str) -> str:
    """Over the essence without Kopf's own annotations (`prefix/...`): Kopf clears its progress annotations
    from the essence it stores, but `fetch` sees them in the object."""
    essence = dict(essence)
    metadata = dict(essence.get("metadata") or {})
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if not k.startswith(f"{prefix}/")}
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    if metadata:
        essence["metadata"] = metadata
    else:
        essence.pop("metadata", None)
    canonical = json.dumps(essence, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """`fetch` returns the object's own essence when it matches the stored digest (no change), else a
    stand-in that differs from any real essence (a change: Kopf calls the update handler). An object last
    handled by a version that kept the JSON copy is read from that copy, which the next store removes."""

    def __init__(self, *, prefix: str) -> None:
        super().__init__(prefix=prefix, key=DIGEST_KEY)
        self._legacy = kopf.AnnotationsDiffBaseStorage(prefix=prefix, key=LEGACY_KEY)
        # Kopf calls `fetch(body)` and at once `build(body)` for every event; `fetch` has just built that
        # essence (a deep copy of the object), so the next `build` of the same body takes it instead of
        # copying again. Kept for that one call only.
        self._just_built: tuple[kopf.Body, kopf.BodyEssence] | None = None

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        just_built, self._just_built = self._just_built, None
        if just_built is not None and just_built[0] is body and not extra_fields:
            return just_built[1]
        essence = super().build(body=body, extra_fields=extra_fields)
        self.remove_annotations(essence, set(self._legacy.make_keys(LEGACY_KEY, body=body)))
        self.remove_empty_stanzas(essence)
        return essence

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        for key in self.make_keys(self.key, body=body):
            stored = body.metadata.annotations.get(key)
            if stored is not None:
                current = self.build(body=body)
                self._just_built = (body, current)
                if essence_digest(current, self.prefix) == stored.strip():
                    return current
                return cast(kopf.BodyEssence, {CHANGED: stored.strip()})
        return self._legacy.fetch(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        for key in self.make_keys(self.key, body=body):
            patch.metadata.annotations[key] = essence_digest(essence, self.prefix)
        for key in self._legacy.make_keys(LEGACY_KEY, body=body):
            if key in body.metadata.annotations:
                patch.metadata.annotations[key] = None  # the copy an older version kept
        self._store_marker(prefix=self.prefix, patch=patch, body=body)

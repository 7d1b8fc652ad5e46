"""Kopf's diff base kept as a digest: unchanged objects stay unchanged, any change of the essence is a
change, objects handled by an earlier version are read from their JSON copy, and the annotation stays small
whatever the size of the inline metadata."""

from __future__ import annotations

import copy
import json
from typing import Any

import kopf

from keyplane.handlers.diffbase import DigestDiffBaseStorage
from keyplane.handlers.kopf_handlers import KOPF_PREFIX

DIGEST = f"{KOPF_PREFIX}/last-handled-digest"
LEGACY = f"{KOPF_PREFIX}/last-handled-configuration"


def idp(inline: str = "<md:EntityDescriptor/>", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "keyplane.dev/v1alpha1", "kind": "IdentityProvider",
            "metadata": {"name": "okta", "namespace": "team-a", "uid": "u1", "resourceVersion": "7",
                         "labels": {"team": "a"}, "annotations": dict(annotations or {})},
            "spec": {"protocol": "SAML", "saml": {"metadata": {"inline": inline}}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def handled(raw: dict[str, Any], storage: DigestDiffBaseStorage) -> dict[str, Any]:
    """The object as the API server holds it after Kopf stored its diff base."""
    patch = kopf.Patch()
    storage.store(body=kopf.Body(raw), patch=patch, essence=storage.build(body=kopf.Body(raw)))
    after = copy.deepcopy(raw)
    for key, value in patch["metadata"]["annotations"].items():
        if value is None:
            after["metadata"]["annotations"].pop(key, None)
        else:
            after["metadata"]["annotations"][key] = value
    return after


def changed(raw: dict[str, Any], storage: DigestDiffBaseStorage) -> bool:
    """What Kopf computes: the diff between the stored base and the object's essence now."""
    body = kopf.Body(raw)
    old, new = storage.fetch(body=body), storage.build(body=body)
    return old is None or old != new


def test_an_object_is_unchanged_until_its_essence_changes() -> None:
    storage = DigestDiffBaseStorage(prefix=KOPF_PREFIX)
    raw = handled(idp(), storage)
    assert not changed(raw, storage)
    # Status, resourceVersion and Kopf's own annotations are not the essence.
    raw["status"] = {"conditions": [{"type": "Ready", "status": "False"}]}
    raw["metadata"]["resourceVersion"] = "8"
    raw["metadata"]["annotations"][f"{KOPF_PREFIX}/identity_provider_changed"] = '{"retries": 1}'  # progress
    assert not changed(raw, storage)
    for edit in (lambda r: r["spec"]["saml"]["metadata"].update(inline="<other/>"),
                 lambda r: r["metadata"]["labels"].update(team="b"),
                 lambda r: r["metadata"]["annotations"].update({"keyplane.dev/rotate-token": "now"})):
        edited = copy.deepcopy(raw)
        edit(edited)
        assert changed(edited, storage)
        assert not changed(handled(edited, storage), storage)


def test_a_new_object_has_no_base() -> None:
    storage = DigestDiffBaseStorage(prefix=KOPF_PREFIX)
    assert storage.fetch(body=kopf.Body(idp())) is None


def test_an_object_handled_by_an_earlier_version_is_read_from_its_copy_which_is_then_dropped() -> None:
    storage = DigestDiffBaseStorage(prefix=KOPF_PREFIX)
    legacy = kopf.AnnotationsDiffBaseStorage(prefix=KOPF_PREFIX, key="last-handled-configuration")
    raw = idp()
    raw["metadata"]["annotations"][LEGACY] = json.dumps(legacy.build(body=kopf.Body(raw))) + "\n"
    assert not changed(raw, storage)  # an upgrade is not a change of every object
    edited = copy.deepcopy(raw)
    edited["spec"]["protocol"] = "OIDC"
    assert changed(edited, storage)
    after = handled(edited, storage)
    assert LEGACY not in after["metadata"]["annotations"] and DIGEST in after["metadata"]["annotations"]


def test_the_annotation_stays_small_whatever_the_inline_metadata() -> None:
    """A copy of a 200 KB metadata document would push the object past the API server's 256 KiB limit on
    annotations (and Kopf could no longer patch it)."""
    storage = DigestDiffBaseStorage(prefix=KOPF_PREFIX)
    raw = handled(idp(inline="<md:EntityDescriptor>" + "x" * 200_000 + "</md:EntityDescriptor>"), storage)
    annotations = raw["metadata"]["annotations"]
    assert sum(len(k) + len(v) for k, v in annotations.items()) < 200
    assert not changed(raw, storage)


def test_the_essence_fetch_built_serves_the_build_that_follows_it_and_only_that() -> None:
    """Kopf calls fetch then build for each event; the object is copied once, not twice."""
    storage = DigestDiffBaseStorage(prefix=KOPF_PREFIX)
    raw = handled(idp(), storage)
    body = kopf.Body(raw)
    old = storage.fetch(body=body)
    assert storage.build(body=body) is old  # not a second copy
    assert storage.build(body=body) is not old and storage.build(body=body) == old  # used once only
    other = kopf.Body(copy.deepcopy(raw))
    storage.fetch(body=body)
    assert storage.build(body=other) is not old  # another body is built afresh

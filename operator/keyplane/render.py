"""`keyplane render`: the operator's reconcile with no cluster, for CI on pull requests.

The same observe and reconcile code runs against an in-memory object store filled from the input
files. Secrets among the inputs are the existing state (tokens and keys are adopted, the bundle is the
last good one), so feeding a render's Secrets back in gives the same output.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import pickle
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from . import forked, manifest_yaml
from .api.kinds import API_GROUP_VERSION, KINDS_BY_NAME
from .mergepatch import apply_merge_patch
from .orchestrator import flush_namespace, observe
from .reconcile.bundle import MANAGED_BY, MANAGED_BY_LABEL
from .reconcile.conditions import READY, is_true
from .reconcile.model import Snapshot
from .reconcile.ssodomain import build_claim_book
from .runtime import Runtime
from .settings import Settings, fetch_policy
from .sources.dns import DnsLookupError
from .sources.metadata_cache import FetcherOnFirstUse, SharedMetadataCache
from .sources.objectstore import KubeError

EXIT_READY, EXIT_NOT_READY, EXIT_UNREADABLE = 0, 1, 2


class InputError(Exception):
    """An input file that cannot be read or parsed."""


def read_documents(paths: Iterable[str]) -> list[dict[str, Any]]:
    """Every YAML/JSON document in the files and directories given (directories recursively, sorted)."""
    documents: list[dict[str, Any]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml", ".json"} and p.is_file())
        elif path.is_file() or raw == "-":
            files = [path]
        else:
            raise InputError(f"{raw}: no such file or directory")
        for file in files:
            try:
                text = sys.stdin.read() if str(file) == "-" else file.read_text()
                loaded = manifest_yaml.load_all(text)
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                raise InputError(f"{file}: {exc}") from exc
            for doc in loaded:
                if doc is None:
                    continue
                if not isinstance(doc, dict) or "kind" not in doc:
                    raise InputError(f"{file}: a document is not a Kubernetes object")
                documents.append(doc)
    return documents


Key = tuple[str, str, str, str]  # apiVersion, plural, namespace, name


@dataclass
class MemoryStore:
    """An ObjectStore over the input objects; records what the operator would write.

    Unlike an API server it hands out and keeps the objects themselves, not copies: the observe and write
    code never edits an object it has read, nor one after handing it over (checked over whole renders by
    tests/unit/operator/test_render_store.py), and copying every object on every read and write was a
    sixth of a render's reconcile. A merge patch builds new dicts along its path (`apply_merge_patch`).
    """

    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    written: dict[Key, dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def key(api_version: str, plural: str, namespace: str, name: str) -> Key:
        return (api_version, plural, namespace, name)

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(self.key(api_version, plural, namespace, name))

    async def create(self, api_version: str, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        key = self.key(api_version, plural, namespace, body["metadata"]["name"])
        if key in self.objects:
            raise KubeError(409, "already exists")
        self.objects[key] = self.written[key] = body
        return body

    async def patch(
        self, api_version: str, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        key = self.key(api_version, plural, namespace, name)
        if key not in self.objects:
            raise KubeError(404, "not found")
        merged = apply_merge_patch(self.objects[key], patch)
        self.objects[key] = self.written[key] = merged
        return merged

    async def patch_status(
        self, api_version: str, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        return await self.patch(api_version, plural, namespace, name, {"status": status})

    async def list(
        self, api_version: str, plural: str, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects of a kind; `label_selector` as `key=value` (the only form the writer uses)."""
        label, _, value = (label_selector or "").partition("=")
        return [o for (group, kind, ns, _), o in sorted(self.objects.items())
                if (group, kind) == (api_version, plural) and namespace in (None, ns)
                and (not label or ((o.get("metadata") or {}).get("labels") or {}).get(label) == value)]

    async def delete(self, api_version: str, plural: str, namespace: str, name: str) -> None:
        self.objects.pop(self.key(api_version, plural, namespace, name), None)
        self.written.pop(self.key(api_version, plural, namespace, name), None)


class _OfflineResolver:
    """DNS is not consulted by render: domains count as verified only if the input status says so."""

    async def txt(self, name: str) -> list[str]:
        raise DnsLookupError("not checked by keyplane render")


@dataclass
class RenderResult:
    outputs: list[dict[str, Any]]
    inputs: list[dict[str, Any]]
    all_ready: bool


def _with_defaults(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The object as the API server would hold it; a new dict where it differs from the input document
    (which the caller keeps), the rest shared."""
    doc = dict(doc)
    meta = doc["metadata"] = dict(doc.get("metadata") or {})
    meta.setdefault("namespace", namespace)
    if doc.get("apiVersion") == API_GROUP_VERSION:
        # Only Keyplane's own objects need a generation; Secrets fed back in must be echoed unchanged.
        meta.setdefault("generation", 1)
    if doc.get("kind") == "Secret" and isinstance(doc.get("stringData"), dict):
        # As the API server stores it: stringData merged into data, base64-encoded.
        data = dict(doc.get("data") or {})
        data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in doc.pop("stringData").items()})
        doc["data"] = data
    return doc


def _load(documents: list[dict[str, Any]], store: MemoryStore, default_namespace: str) -> list[Snapshot]:
    """Put the input objects into the store; return Keyplane's own objects as snapshots."""
    snaps: list[Snapshot] = []
    for raw in documents:
        doc = _with_defaults(raw, default_namespace)
        meta = doc["metadata"]
        if not meta.get("name"):
            raise InputError(f"a {doc.get('kind')} has no metadata.name")
        if doc.get("apiVersion") == API_GROUP_VERSION and doc.get("kind") in KINDS_BY_NAME:
            snaps.append(Snapshot.from_body(doc))
            plural = KINDS_BY_NAME[doc["kind"]].plural
            store.objects[store.key(API_GROUP_VERSION, plural, meta["namespace"], meta["name"])] = doc
        elif doc.get("apiVersion") == "v1" and doc.get("kind") in {"Secret", "ConfigMap"}:
            plural = "secrets" if doc["kind"] == "Secret" else "configmaps"
            store.objects[store.key("v1", plural, meta["namespace"], meta["name"])] = doc
    return snaps


def _runtime_over(store: MemoryStore, snaps: list[Snapshot], settings: Settings, now: datetime,
                  cache: SharedMetadataCache | None) -> Runtime:
    """The operator's runtime over files: indexes as Kopf would build them, a fixed clock, no DNS, no Events."""
    runtime = Runtime(settings=settings, kube=store, cache=cache, resolver=_OfflineResolver(),
                      clock=lambda: now, post_events=False)
    indexes = (("idp_index", "IdentityProvider"), ("ssod_index", "SSODomain"), ("scim_index", "ScimConnection"))
    for index, kind in indexes:
        by_namespace: dict[str, list[Snapshot]] = {}
        for snap in snaps:
            if snap.kind == kind:
                by_namespace.setdefault(snap.namespace, []).append(snap)
        runtime.indexes[index] = by_namespace
    runtime.indexes["claims_index"] = build_claim_book(
        [s for s in snaps if s.kind == "SSODomain"], settings.domain_scope == "Cluster"
    )
    return runtime


@dataclass
class _Render:
    """One render's state: the store filled from the files, their objects, and the operator's runtime."""

    store: MemoryStore
    snaps: list[Snapshot]
    runtime: Runtime
    fetcher: FetcherOnFirstUse | None
    namespaces: list[str]


def _prepare(documents: list[dict[str, Any]], settings: Settings, now: datetime, offline: bool,
             default_namespace: str) -> _Render:
    store = MemoryStore()
    snaps = _load(documents, store, default_namespace)
    fetcher = None if offline else FetcherOnFirstUse(fetch_policy(settings))
    runtime = _runtime_over(store, snaps, settings, now, SharedMetadataCache(fetcher) if fetcher else None)
    return _Render(store, snaps, runtime, fetcher, sorted({s.namespace for s in snaps}))


async def _run_namespaces(state: _Render, namespaces: list[str]) -> None:
    """The operator's pass over these namespaces: `orchestrator.observe` for each of their objects, then
    `flush_namespace` for each. Namespaces are independent: a render may split them between processes.

    Returns nothing on purpose: when `asyncio.run` restores the SIGINT handler it formats the repr of its
    main task, result included, and the repr of a whole render took ~100 ms."""
    wanted = set(namespaces)
    try:
        for snap in state.snaps:
            if snap.namespace in wanted:
                await observe(state.runtime, snap)
        for namespace in namespaces:
            await flush_namespace(state.runtime, namespace)
    finally:
        if state.fetcher is not None:
            await state.fetcher.aclose()


def _result(state: _Render) -> RenderResult:
    store, bundle_name = state.store, state.runtime.settings.bundle_secret_name
    outputs = [o for namespace in state.namespaces for o in _managed_objects(store, namespace, bundle_name)]
    inputs = []
    for snap in state.snaps:
        plural = KINDS_BY_NAME[snap.kind].plural
        inputs.append(store.objects[store.key(API_GROUP_VERSION, plural, snap.namespace, snap.name)])
    all_ready = all(is_true(body.get("status"), READY) for body in inputs)
    return RenderResult(outputs, inputs, all_ready)


async def render(
    documents: list[dict[str, Any]], settings: Settings, now: datetime, *, offline: bool = False,
    default_namespace: str = "default",
) -> RenderResult:
    """Run the operator's pass (`orchestrator.observe` then `flush_namespace`) over the input files."""
    state = _prepare(documents, settings, now, offline, default_namespace)
    await _run_namespaces(state, state.namespaces)
    return _result(state)


def _halves(state: _Render) -> tuple[list[str], list[str]]:
    """The namespaces, in sorted order, cut where the two parts hold the nearest numbers of objects: this
    process's part, and the forked copy's (empty when there is only one namespace)."""
    namespaces = state.namespaces
    if len(namespaces) < 2:
        return namespaces, []
    sizes = dict.fromkeys(namespaces, 0)
    for snap in state.snaps:
        sizes[snap.namespace] += 1
    running, best_cut, best_gap = 0, 1, len(state.snaps) + 1
    for cut in range(1, len(namespaces)):
        running += sizes[namespaces[cut - 1]]
        gap = abs(len(state.snaps) - 2 * running)
        if gap < best_gap:
            best_cut, best_gap = cut, gap
    return namespaces[:best_cut], namespaces[best_cut:]


def _objects_of(state: _Render, namespaces: list[str]) -> list[tuple[Key, dict[str, Any]]]:
    wanted = set(namespaces)
    return [(key, body) for key, body in state.store.objects.items() if key[2] in wanted]  # key: .., namespace, name


def _render_in_two_processes(documents: list[dict[str, Any]], settings: Settings, now: datetime,
                             offline: bool) -> RenderResult:
    """:func:`render` with the second half of the namespaces made by a forked copy of this process, on
    another core, when there is one (`forked.available`), and by this process otherwise.

    Namespaces are independent in the operator's pass (each has its own bundle, and domain claims across
    namespaces are read from the specs, before the split), so each process makes whole namespaces and the
    copy sends back every object of its namespaces, which replace this process's. The output is the same
    bytes as one process gives (tested). If the copy fails, this process makes its namespaces itself, from
    the untouched state they had. A metadata URL used in both halves is fetched once by each process.
    """
    state = _prepare(documents, settings, now, offline, "default")
    mine, theirs = _halves(state) if forked.available() else (state.namespaces, [])
    copy = None
    if theirs:
        def work() -> bytes:
            asyncio.run(_run_namespaces(state, theirs))
            return pickle.dumps(_objects_of(state, theirs), protocol=pickle.HIGHEST_PROTOCOL)

        copy = forked.start(work)
    try:
        asyncio.run(_run_namespaces(state, mine))
    finally:
        payload = copy.result() if copy is not None else None
    if theirs:
        if payload is None:
            asyncio.run(_run_namespaces(state, theirs))
        else:
            for key, _ in _objects_of(state, theirs):
                del state.store.objects[key]
            state.store.objects.update(pickle.loads(payload))
    return _result(state)


def _managed_objects(store: MemoryStore, namespace: str, bundle_name: str) -> list[dict[str, Any]]:
    """What the operator owns in a namespace, issued or adopted: Secrets (the bundle after the token and
    signing Secrets), then ConfigMaps (SP metadata)."""
    def order(o: dict[str, Any]) -> tuple[int, str]:
        name = str(o["metadata"]["name"])
        rank = 0 if o["kind"] == "Secret" and name != bundle_name else 1 if o["kind"] == "Secret" else 2
        return (rank, name)

    managed = [o for o in store.objects.values()
               if o.get("kind") in ("Secret", "ConfigMap") and o["metadata"].get("namespace") == namespace
               and (o["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY]
    return sorted(managed, key=order)


def write_stream(result: RenderResult, out: TextIO) -> None:
    documents = result.outputs + result.inputs
    buffer = getattr(out, "buffer", None)
    if buffer is not None:  # stdout: the emitter's UTF-8 bytes as they are (the same text, ASCII-escaped)
        out.flush()
        buffer.write(manifest_yaml.dump_all_utf8(documents))
    else:
        out.write(manifest_yaml.dump_all(documents))


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """A render builds about a million objects that live until it ends and makes little cyclic garbage:
    at CPython's default threshold (700 allocations) the collector ran ~190 times over them (~30 ms of
    a render of 1000 objects). 200 000 is mypy's choice for the same kind of batch job. Restored after.

    Restored with every object counted as old: the young generations' counts, far over the default
    threshold by then, would start a full collection at the next allocation (~20 ms over those million
    objects, most of them still alive). Freezing then unfreezing moves them all to the oldest generation
    without a pass; any cyclic garbage among them goes at the next full collection, as it would have.
    """
    before = gc.get_threshold()
    gc.set_threshold(200_000, *before[1:])
    try:
        yield
    finally:
        gc.freeze()
        gc.set_threshold(*before)
        gc.unfreeze()


def run_render(paths: list[str], settings: Settings, now: datetime, out: TextIO, err: TextIO,
               *, offline: bool = False) -> int:
    with _fewer_collections():
        try:
            result = _render_in_two_processes(read_documents(paths), settings, now, offline)
        except InputError as exc:
            err.write(f"keyplane render: {exc}\n")
            return EXIT_UNREADABLE
        write_stream(result, out)
    if not result.all_ready:
        for body in result.inputs:
            status = body.get("status") or {}
            if not is_true(status, READY):
                ready: dict[str, Any] = next(
                    (c for c in status.get("conditions") or [] if c.get("type") == READY), {}
                )
                err.write(f"{body['kind']} {body['metadata']['namespace']}/{body['metadata']['name']} is not "
                          f"Ready: {ready.get('reason')}: {ready.get('message')}\n")
        return EXIT_NOT_READY
    return EXIT_READY

"""`keyplane render`: the operator's reconcile with no cluster, for CI on pull requests.

The same observe and reconcile code runs against an in-memory object store filled from the input
files. Secrets among the inputs are the existing state (tokens and keys are adopted, the bundle is the
last good one), so feeding a render's Secrets back in gives the same output.
"""

from __future__ import annotations

import asyncio
import copy
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from .api.kinds import API_GROUP_VERSION, KINDS_BY_NAME
from .contract import sp_metadata_xml
from .handlers.lifecycle import fetch_policy
from .mergepatch import apply_merge_patch
from .observe.identityprovider import observe_identity_provider
from .observe.scimconnection import observe_scim_connection
from .observe.ssodomain import observe_sso_domain
from .reconcile.bundle import bundle_secret, parse_bundle_secret
from .reconcile.conditions import READY, is_true
from .reconcile.identityprovider import IdPObservation
from .reconcile.model import Snapshot
from .reconcile.namespace import NamespaceInputs, reconcile_namespace
from .reconcile.scimtoken import TokenState
from .reconcile.ssodomain import DnsObservation, build_claim_book
from .settings import Settings
from .sources.dns import DnsLookupError
from .sources.fetcher import MetadataFetcher, SharedMetadataCache
from .sources.kube import KubeError, resource_path

EXIT_READY, EXIT_NOT_READY, EXIT_UNREADABLE = 0, 1, 2
# LibYAML when PyYAML was built with it: most of a large render's time is YAML.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


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
                loaded = list(yaml.load_all(text, Loader=_LOADER))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                raise InputError(f"{file}: {exc}") from exc
            for doc in loaded:
                if doc is None:
                    continue
                if not isinstance(doc, dict) or "kind" not in doc:
                    raise InputError(f"{file}: a document is not a Kubernetes object")
                documents.append(doc)
    return documents


@dataclass
class MemoryStore:
    """An ObjectStore over the input objects; records what the operator would write."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    written: dict[str, dict[str, Any]] = field(default_factory=dict)

    @staticmethod
    def key(api_version: str, plural: str, namespace: str, name: str) -> str:
        return resource_path(api_version, plural, namespace, name)

    async def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get(self.key(api_version, plural, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def create(self, api_version: str, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        key = self.key(api_version, plural, namespace, body["metadata"]["name"])
        if key in self.objects:
            raise KubeError(409, "already exists")
        self.objects[key] = self.written[key] = copy.deepcopy(body)
        return copy.deepcopy(body)

    async def patch(
        self, api_version: str, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        key = self.key(api_version, plural, namespace, name)
        if key not in self.objects:
            raise KubeError(404, "not found")
        merged = apply_merge_patch(self.objects[key], patch)
        self.objects[key] = self.written[key] = merged
        return copy.deepcopy(merged)

    async def delete(self, api_version: str, plural: str, namespace: str, name: str) -> None:
        self.objects.pop(self.key(api_version, plural, namespace, name), None)


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
    doc = copy.deepcopy(doc)
    meta = doc.setdefault("metadata", {})
    meta.setdefault("namespace", namespace)
    if doc.get("apiVersion") == API_GROUP_VERSION:
        # Only Keyplane's own objects need a generation; Secrets fed back in must be echoed unchanged.
        meta.setdefault("generation", 1)
    return doc


async def render(
    documents: list[dict[str, Any]], settings: Settings, now: datetime, *, offline: bool = False,
    default_namespace: str = "default",
) -> RenderResult:
    store = MemoryStore()
    snaps: list[Snapshot] = []
    bodies: dict[tuple[str, str, str], dict[str, Any]] = {}
    for raw in documents:
        doc = _with_defaults(raw, default_namespace)
        meta = doc["metadata"]
        if not meta.get("name"):
            raise InputError(f"a {doc.get('kind')} has no metadata.name")
        if doc.get("apiVersion") == API_GROUP_VERSION and doc.get("kind") in KINDS_BY_NAME:
            snap = Snapshot.from_body(doc)
            snaps.append(snap)
            bodies[snap.key] = doc
        elif doc.get("apiVersion") == "v1" and doc.get("kind") in {"Secret", "ConfigMap"}:
            plural = "secrets" if doc["kind"] == "Secret" else "configmaps"
            store.objects[store.key("v1", plural, meta["namespace"], meta["name"])] = doc

    fetcher = None if offline else MetadataFetcher(fetch_policy(settings))
    cache = SharedMetadataCache(fetcher) if fetcher is not None else None
    try:
        namespaces = sorted({s.namespace for s in snaps})
        claims = build_claim_book(
            [s for s in snaps if s.kind == "SSODomain"], settings.domain_scope == "Cluster"
        )
        outputs: list[dict[str, Any]] = []
        all_ready = True
        statuses: dict[tuple[str, str, str], dict[str, Any]] = {}
        for namespace in namespaces:
            here = [s for s in snaps if s.namespace == namespace]
            previous_secret = await store.get("v1", "secrets", namespace, settings.bundle_secret_name)
            previous_bundle = parse_bundle_secret(previous_secret)
            idp_obs: dict[str, IdPObservation] = {}
            tokens: dict[str, TokenState | None] = {}
            dns: dict[str, DnsObservation] = {}
            for snap in here:
                if snap.kind == "IdentityProvider":
                    seed = ((previous_bundle or {}).get("identityProviders") or {}).get(snap.name)
                    idp_obs[snap.name] = await observe_identity_provider(
                        snap, store, cache, None, settings, now, seed_entry=seed
                    )
                elif snap.kind == "ScimConnection":
                    tokens[snap.name], _events = await observe_scim_connection(snap, store, now)
                else:
                    dns[snap.name] = await observe_sso_domain(snap, _OfflineResolver(), None)
            result = reconcile_namespace(
                NamespaceInputs(namespace, here, idp_obs, tokens, dns, claims, previous_bundle), settings, now
            )
            for (kind, name), outcome in result.results.items():
                statuses[(kind, namespace, name)] = outcome.status
                all_ready = all_ready and is_true(outcome.status, READY)
            outputs.extend(_sorted_written(store, namespace, settings.bundle_secret_name))
            if result.data is not None:
                owners = [s.owner_reference(controller=False) for s in sorted(here, key=lambda s: (s.kind, s.name))
                          if s.uid]
                outputs.append(bundle_secret(settings.bundle_secret_name, namespace, result.data, owners))
            outputs.extend(_sp_metadata_configmaps(namespace, result.bundle))
        inputs = []
        for key, body in bodies.items():
            body = dict(body)
            body["status"] = statuses.get(key, body.get("status"))
            inputs.append(body)
        return RenderResult(outputs, inputs, all_ready)
    finally:
        if fetcher is not None:
            await fetcher.aclose()


def _sorted_written(store: MemoryStore, namespace: str, bundle_name: str) -> list[dict[str, Any]]:
    """The token and SP signing Secrets the operator owns in a namespace (adopted or issued)."""
    written = [o for o in store.objects.values()
               if o.get("kind") == "Secret" and o["metadata"].get("namespace") == namespace
               and o["metadata"].get("name") != bundle_name
               and (o["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "keyplane"]
    return sorted(written, key=lambda o: str(o["metadata"]["name"]))


def _sp_metadata_configmaps(namespace: str, bundle: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The SP metadata XML of each SAML IdP, to upload to the IdP (Entra ID and ADFS accept a file)."""
    out = []
    for name, entry in sorted(((bundle or {}).get("identityProviders") or {}).items()):
        if entry.get("protocol") != "SAML":
            continue
        out.append({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-sp-metadata", "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "keyplane"}},
            "data": {"metadata.xml": sp_metadata_xml(entry["saml"])},
        })
    return out


def write_stream(result: RenderResult, out: TextIO) -> None:
    documents = result.outputs + result.inputs
    out.write(yaml.dump_all(documents, Dumper=_DUMPER, sort_keys=True, explicit_start=True, width=120))


def run_render(paths: list[str], settings: Settings, now: datetime, out: TextIO, err: TextIO,
               *, offline: bool = False) -> int:
    try:
        documents = read_documents(paths)
        result = asyncio.run(render(documents, settings, now, offline=offline))
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

"""The `<idp>-sp-metadata` ConfigMaps: the SP metadata document of each SAML IdP, for its IdP admin.

Entra ID and ADFS take the SP metadata as a file; the ConfigMap holds exactly the bytes the app serves at
`/sso/saml/<idp>/metadata` (both come from `keyplane.contract.sp_metadata_xml` over the bundle entry).
Owner-referenced by its IdentityProvider; written only when its content changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from ..contract import SPMetadataError, parse_time_or_none, sp_metadata_xml
from ..observe.secrets import managed_labels
from ..reconcile.model import Snapshot
from ..sources.objectstore import KubeError

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger("keyplane.operator")

SP_METADATA_KEY = "metadata.xml"


def sp_metadata_configmap_name(idp: str) -> str:
    return f"{idp}-sp-metadata"


def sp_metadata_configmap(namespace: str, idp: str, xml: str, owner: Snapshot | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": sp_metadata_configmap_name(idp),
        "namespace": namespace,
        "labels": managed_labels("IdentityProvider", idp),
    }
    if owner is not None and owner.uid:
        metadata["ownerReferences"] = [owner.owner_reference(controller=True)]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {SP_METADATA_KEY: xml}}


def saml_settings_by_idp(bundle: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """IdP name -> python3-saml settings, for every SAML IdP in the bundle."""
    idps = ((bundle or {}).get("identityProviders") or {}).items()
    return {name: entry["saml"] for name, entry in sorted(idps) if entry.get("protocol") == "SAML"}


def _digest(saml: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(saml, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def write_sp_metadata(
    runtime: Runtime, namespace: str, snaps: list[Snapshot], bundle: dict[str, Any] | None
) -> None:
    """Create or update each SAML IdP's ConfigMap when its settings changed; delete those no longer wanted.

    The document is a pure function of the IdP's bundle settings, so a pass whose settings did not
    change neither builds it (python3-saml's schema validation is not cheap) nor sends any request.
    """
    kube = runtime.kube
    wanted = saml_settings_by_idp(bundle)
    owners = {s.name: s for s in snaps if s.kind == "IdentityProvider" and not s.deleting}
    for name, saml in wanted.items():
        digest = _digest(saml)
        if runtime.sp_metadata.get((namespace, name)) == digest:
            continue
        try:
            xml = sp_metadata_xml(saml)
        except SPMetadataError as exc:  # the IdP's status already says what is wrong with its settings
            log.warning("IdentityProvider %s/%s: no SP metadata ConfigMap: %s", namespace, name, exc)
            continue
        owner = owners.get(name)
        await _apply(runtime, namespace, sp_metadata_configmap(namespace, name, xml, owner),
                     likely_new=owner is not None and created_since_start(runtime, owner))
        runtime.sp_metadata[(namespace, name)] = digest
    for ns, name in [key for key in runtime.sp_metadata if key[0] == namespace and key[1] not in wanted]:
        await kube.delete("v1", "configmaps", ns, sp_metadata_configmap_name(name))
        runtime.sp_metadata.pop((ns, name), None)  # the ConfigMap watch may have dropped it during the delete


def created_since_start(runtime: Runtime, owner: Snapshot) -> bool:
    """An IdP created after this process started: its ConfigMap most likely does not exist yet."""
    created = parse_time_or_none(owner.creation_timestamp)
    return created is not None and created >= runtime.started_at


async def _apply(runtime: Runtime, namespace: str, manifest: dict[str, Any], *, likely_new: bool) -> None:
    """Create, or patch only if different. For a new IdP the create goes first (a round trip less on its
    way to Ready, under load about a second); otherwise a read first, so a restart writes nothing."""
    kube, meta = runtime.kube, manifest["metadata"]
    current = None if likely_new else await kube.get("v1", "configmaps", namespace, meta["name"])
    if current is None:
        try:
            await kube.create("v1", "configmaps", namespace, manifest)
            return
        except KubeError as exc:
            if exc.status != 409:
                raise
            current = await kube.get("v1", "configmaps", namespace, meta["name"]) or {}
    current_meta = current.get("metadata") or {}
    same = (
        current.get("data") == manifest["data"]
        and all((current_meta.get("labels") or {}).get(k) == v for k, v in meta["labels"].items())
        and (current_meta.get("ownerReferences") or []) == meta.get("ownerReferences", [])
    )
    if not same:
        patch = {"metadata": {"labels": meta["labels"], "ownerReferences": meta.get("ownerReferences", [])},
                 "data": manifest["data"]}
        await kube.patch("v1", "configmaps", namespace, meta["name"], patch)

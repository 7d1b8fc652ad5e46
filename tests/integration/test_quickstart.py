"""The quickstart converges on the emulated API server, as `make demo` shows, and then stays quiet."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema

from keyplane.render import read_documents, render
from keyplane.settings import Settings

from .idp_server import IdPServer, discovery
from .signing import jwks

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
NS = "keyplane-demo"


def ready(obj: dict[str, Any] | None) -> bool:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


async def apply_quickstart(cluster: Any) -> list[dict[str, Any]]:
    docs = read_documents([str(QUICKSTART)])
    for doc in sorted(docs, key=lambda d: d["kind"] != "Namespace"):
        await cluster.apply(doc)
    return [d for d in docs if d["apiVersion"].startswith("keyplane.dev/")]


async def all_ready(cluster: Any, docs: list[dict[str, Any]]) -> bool:
    for doc in docs:
        obj = await cluster.get(doc["apiVersion"], doc["kind"], NS, doc["metadata"]["name"])
        if not ready(obj):
            return False
    return await cluster.get("v1", "Secret", NS, "keyplane-identity") is not None


async def test_quickstart_converges_and_writes_the_bundle(cluster: Any, keyplane_operator: Any) -> None:
    docs = await apply_quickstart(cluster)
    async with keyplane_operator():
        await cluster.wait_for(lambda: all_ready(cluster, docs), timeout=20)
        secret = await cluster.get("v1", "Secret", NS, "keyplane-identity")
        bundle = json.loads(base64.b64decode(secret["data"]["identity.json"]))
        schema = json.loads((QUICKSTART.parents[1] / "docs" / "bundle.schema.json").read_text())
        jsonschema.validate(bundle, schema, cls=jsonschema.Draft202012Validator)
        assert set(bundle["identityProviders"]) == {"okta", "keycloak"}
        assert bundle["domains"]["acme.com"] == {
            "identityProvider": "okta", "enforcement": "Required", "breakGlassUsers": ["root@acme.com"]}
        assert bundle["scim"]["okta"]["groupBindings"] == {"platform-admins": "Admin", "data-engineering": "Member"}
        token = await cluster.get("v1", "Secret", NS, "okta-scim-token")
        plain = base64.b64decode(token["data"]["token"]).decode()
        assert len(plain) >= 43
        assert plain not in json.dumps(bundle)  # only hashes in the bundle
        assert secret["metadata"]["annotations"]["keyplane.dev/bundle-sha256"]
        idp = await cluster.get("keyplane.dev/v1alpha1", "IdentityProvider", NS, "okta")
        assert idp["status"]["serviceProvider"]["acsURL"] == "https://platform.example.com/sso/saml/okta/acs"
        assert "kopf" not in json.dumps(idp["status"])  # Kopf's bookkeeping stays out of status
        assert "keyplane.dev/finalizer" in idp["metadata"]["finalizers"]


async def test_steady_state_makes_no_writes(cluster: Any, keyplane_operator: Any) -> None:
    docs = await apply_quickstart(cluster)
    async with keyplane_operator(resync_interval=0.3):
        await cluster.wait_for(lambda: all_ready(cluster, docs), timeout=20)
        await asyncio.sleep(1.0)  # let the last writes settle
        cluster.mark()
        await asyncio.sleep(3.0)  # several resyncs and timer ticks
        assert cluster.writes_since_mark() == []


async def test_operator_never_writes_what_users_own(cluster: Any, keyplane_operator: Any) -> None:
    """GitOps tools must never see drift caused by the operator: spec, labels, user annotations."""
    docs = await apply_quickstart(cluster)
    for doc in docs:
        await cluster.patch(doc["apiVersion"], doc["kind"], NS, doc["metadata"]["name"],
                            {"metadata": {"labels": {"team": "platform"},
                                          "annotations": {"example.com/owner": "alice"}}})
    before = {
        d["metadata"]["name"] + d["kind"]: await cluster.get(d["apiVersion"], d["kind"], NS, d["metadata"]["name"])
        for d in docs
    }
    async with keyplane_operator():
        await cluster.wait_for(lambda: all_ready(cluster, docs), timeout=20)
        await asyncio.sleep(1.0)
        for key, old in before.items():
            new = await cluster.get(old["apiVersion"], old["kind"], NS, old["metadata"]["name"])
            assert new["spec"] == old["spec"], key
            assert new["metadata"]["labels"] == old["metadata"]["labels"], key
            own = {k: v for k, v in new["metadata"]["annotations"].items() if not k.startswith("kopf.keyplane.dev/")}
            assert own == old["metadata"]["annotations"], key


async def test_render_prints_what_the_operator_writes(cluster: Any, keyplane_operator: Any) -> None:
    """`keyplane render` and the operator write the same objects: Secrets and the SP metadata ConfigMaps."""
    docs = await apply_quickstart(cluster)
    async with keyplane_operator(resync_interval=0.3):
        await cluster.wait_for(lambda: all_ready(cluster, docs), timeout=20)

        async def written() -> dict[tuple[str, str], dict[str, Any]]:
            found = {}
            for kind in ("Secret", "ConfigMap"):
                for obj in await cluster.list("v1", kind, NS, label_selector="app.kubernetes.io/managed-by=keyplane"):
                    found[(kind, obj["metadata"]["name"])] = obj
            return found

        async def metadata_written() -> dict[tuple[str, str], dict[str, Any]] | None:
            objects = await written()
            return objects if ("ConfigMap", "okta-sp-metadata") in objects else None

        by_operator = await cluster.wait_for(metadata_written, timeout=10)
        idp = await cluster.get("keyplane.dev/v1alpha1", "IdentityProvider", NS, "okta")
        owners = by_operator[("ConfigMap", "okta-sp-metadata")]["metadata"]["ownerReferences"]
        assert [(o["kind"], o["name"], o["uid"], o["controller"]) for o in owners] == [
            ("IdentityProvider", "okta", idp["metadata"]["uid"], True)]
        await asyncio.sleep(1.0)
        cluster.mark()
        await asyncio.sleep(1.5)  # resyncs: an unchanged ConfigMap is not written again
        assert cluster.writes_since_mark() == []

    # Render the same files with the operator's Secrets fed back (the keys and tokens are adopted).
    state = [obj for (kind, _n), obj in by_operator.items() if kind == "Secret"]
    result = await render(read_documents([str(QUICKSTART)]) + state, Settings(), datetime.now(UTC), offline=True)
    by_render = {(o["kind"], o["metadata"]["name"]): o for o in result.outputs}
    assert set(by_render) == set(by_operator)
    for key in [k for k in by_render if k[0] == "ConfigMap"]:
        assert by_render[key]["data"] == by_operator[key]["data"], key
    bundle = ("Secret", "keyplane-identity")
    assert by_render[bundle]["data"] == by_operator[bundle]["data"]


async def test_an_sp_metadata_configmap_deleted_by_hand_comes_back(cluster: Any, keyplane_operator: Any) -> None:
    docs = await apply_quickstart(cluster)
    async with keyplane_operator():
        await cluster.wait_for(lambda: all_ready(cluster, docs), timeout=20)
        original = await cluster.wait_for(lambda: cluster.get("v1", "ConfigMap", NS, "okta-sp-metadata"), timeout=10)
        await cluster.delete("v1", "ConfigMap", NS, "okta-sp-metadata")
        again = await cluster.wait_for(lambda: cluster.get("v1", "ConfigMap", NS, "okta-sp-metadata"), timeout=10)
        assert again["data"] == original["data"]
        assert again["metadata"]["uid"] != original["metadata"]["uid"]


async def test_sp_metadata_configmaps_follow_their_idps(cluster: Any, keyplane_operator: Any) -> None:
    """Updated when the SP settings change; deleted by the operator when the IdP stops being SAML."""
    docs = await apply_quickstart(cluster)
    oidc = await IdPServer().start()
    try:
        issuer = f"{oidc.url}/realms/contractors"
        oidc.put("/realms/contractors/.well-known/openid-configuration", json.dumps(discovery(issuer, oidc.url)),
                 content_type="application/json")
        oidc.put("/jwks", json.dumps(jwks()), content_type="application/json")
        async with keyplane_operator():
            await cluster.wait_for(lambda: all_ready(cluster, docs), timeout=20)
            await cluster.wait_for(lambda: cluster.get("v1", "ConfigMap", NS, "keycloak-sp-metadata"), timeout=10)
            await cluster.patch("keyplane.dev/v1alpha1", "IdentityProvider", NS, "okta",
                                {"spec": {"serviceProvider": {"baseURL": "https://moved.example.com"}}})

            async def moved() -> bool:
                found = await cluster.get("v1", "ConfigMap", NS, "okta-sp-metadata")
                return 'entityID="https://moved.example.com/sso/saml/okta"' in found["data"]["metadata.xml"]

            await cluster.wait_for(moved, timeout=10)
            await cluster.patch("keyplane.dev/v1alpha1", "IdentityProvider", NS, "keycloak", {"spec": {
                "protocol": "OIDC", "saml": None, "oidc": {"issuer": issuer, "clientID": "platform"}}})

            async def gone() -> bool:
                return await cluster.get("v1", "ConfigMap", NS, "keycloak-sp-metadata") is None

            await cluster.wait_for(gone, timeout=15)
    finally:
        await oidc.stop()

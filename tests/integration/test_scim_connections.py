"""ScimConnection against the emulated API: token issue, rotation, overlap, adoption, bindings."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from .builders import API, NS, bundle_of, condition, decode, is_ready, namespace, saml_idp, scim


async def _ready_scim(cluster: Any, name: str = "okta") -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        obj = await cluster.get(API, "ScimConnection", NS, name)
        return obj if is_ready(obj) else None

    return await cluster.wait_for(check, timeout=15)


async def _bundle(cluster: Any) -> dict[str, Any]:
    secret = await cluster.get("v1", "Secret", NS, "keyplane-identity")
    return bundle_of(secret) if secret else {"scim": {}, "identityProviders": {}, "domains": {}}


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def test_token_is_issued_hashed_and_shown_in_status(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(scim("okta", bindings={"admins": "Admin"}))
    async with keyplane_operator():
        obj = await _ready_scim(cluster)
        secret = await cluster.get("v1", "Secret", NS, "okta-scim-token")
        token = decode(secret, "token")
        assert len(token) >= 43  # 256 bits, URL-safe base64
        assert obj["status"]["endpointURL"] == "https://platform.example.com/scim/v2/okta"
        assert obj["status"]["tokenSecretRef"] == {"name": "okta-scim-token", "key": "token"}
        assert obj["status"]["tokenIssuedAt"] and obj["status"]["tokenRotatesAt"]
        assert token not in str(obj["status"])
        bundle = await cluster.wait_for(lambda: _bundle(cluster))
        assert bundle["scim"]["okta"]["tokenHashes"] == [{"sha256": _sha(token), "notAfter": None}]
        assert "ownerReferences" not in secret["metadata"]  # Retain: outlives a delete-and-recreate


async def test_annotation_rotates_with_overlap_then_previous_expires(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(scim("okta", token={"overlap": "3s"}))
    async with keyplane_operator():
        await _ready_scim(cluster)
        old = decode(await cluster.get("v1", "Secret", NS, "okta-scim-token"), "token")
        await cluster.patch(API, "ScimConnection", NS, "okta",
                            {"metadata": {"annotations": {"keyplane.dev/rotate-token": "1"}}})

        async def rotated() -> dict[str, Any] | None:
            bundle = await _bundle(cluster)
            hashes = bundle["scim"]["okta"]["tokenHashes"]
            return bundle if len(hashes) == 2 else None

        bundle = await cluster.wait_for(rotated, timeout=10)
        new = decode(await cluster.get("v1", "Secret", NS, "okta-scim-token"), "token")
        assert new != old
        current, previous = bundle["scim"]["okta"]["tokenHashes"]
        assert current == {"sha256": _sha(new), "notAfter": None}
        assert previous["sha256"] == _sha(old) and previous["notAfter"]

        # The bundle is written before the status that reports it (DESIGN.md, "What a user sees, in
        # order"): the status may trail the bundle by a moment, so wait for it rather than read it once.
        async def status_explains_it() -> bool:
            obj = await cluster.get(API, "ScimConnection", NS, "okta")
            return obj["status"].get("previousTokenExpiresAt") == previous["notAfter"]

        await cluster.wait_for(status_explains_it, timeout=10)

        async def overlap_over() -> bool:
            return len((await _bundle(cluster))["scim"]["okta"]["tokenHashes"]) == 1

        await cluster.wait_for(overlap_over, timeout=10)
        # The same annotation value again does not rotate again.
        await asyncio.sleep(1.5)
        assert decode(await cluster.get("v1", "Secret", NS, "okta-scim-token"), "token") == new


async def test_scheduled_rotation(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(scim("okta", token={"rotationInterval": "2s", "overlap": "1h"}))
    async with keyplane_operator():
        await _ready_scim(cluster)
        first = decode(await cluster.get("v1", "Secret", NS, "okta-scim-token"), "token")

        async def changed() -> bool:
            secret = await cluster.get("v1", "Secret", NS, "okta-scim-token")
            return decode(secret, "token") != first

        await cluster.wait_for(changed, timeout=10)
        secret = await cluster.get("v1", "Secret", NS, "okta-scim-token")
        assert decode(secret, "previous-sha256") == _sha(first)


async def test_restart_keeps_the_token_and_writes_nothing(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(scim("okta"))
    async with keyplane_operator():
        await _ready_scim(cluster)
        token = decode(await cluster.get("v1", "Secret", NS, "okta-scim-token"), "token")
        await asyncio.sleep(0.5)
    cluster.mark()
    async with keyplane_operator():
        await asyncio.sleep(2.0)
        assert decode(await cluster.get("v1", "Secret", NS, "okta-scim-token"), "token") == token
        writes = [w for w in cluster.writes_since_mark(ignore_events=True) if "/secrets" in w]
        assert writes == []


async def test_delete_and_recreate_adopts_the_existing_token(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(scim("okta"))
    async with keyplane_operator():
        await _ready_scim(cluster)
        token = decode(await cluster.get("v1", "Secret", NS, "okta-scim-token"), "token")
        await cluster.delete(API, "ScimConnection", NS, "okta")
        await cluster.wait_for(lambda: _absent(cluster, "ScimConnection", "okta"), timeout=10)
        await cluster.apply(scim("okta"))
        await _ready_scim(cluster)
        assert decode(await cluster.get("v1", "Secret", NS, "okta-scim-token"), "token") == token

        async def served() -> bool:
            entry = (await _bundle(cluster))["scim"].get("okta") or {}
            return entry.get("tokenHashes") == [{"sha256": _sha(token), "notAfter": None}]

        await cluster.wait_for(served, timeout=10)


async def _absent(cluster: Any, kind: str, name: str) -> bool:
    return await cluster.get(API, kind, NS, name) is None


async def test_token_secret_deleted_by_hand_is_reissued_with_an_event(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(scim("okta"))
    async with keyplane_operator():
        await _ready_scim(cluster)
        old = decode(await cluster.get("v1", "Secret", NS, "okta-scim-token"), "token")
        await cluster.delete("v1", "Secret", NS, "okta-scim-token")

        async def reissued() -> str | None:
            secret = await cluster.get("v1", "Secret", NS, "okta-scim-token")
            return decode(secret, "token") if secret else None

        new = await cluster.wait_for(reissued, timeout=10)
        assert new != old
        events = await cluster.list("v1", "Event", NS)
        assert any(e["reason"] == "TokenReissued" and e["type"] == "Warning" for e in events)
        assert all(new not in str(e) and old not in str(e) for e in events)


async def test_invalid_bindings_keep_the_previous_valid_ones(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(scim("okta", bindings={"admins": "Admin"}))
    async with keyplane_operator():
        await _ready_scim(cluster)
        await cluster.apply(scim("okta", bindings={"admins": "Admin", "ops": "Superuser"}))

        async def stalled() -> dict[str, Any] | None:
            obj = await cluster.get(API, "ScimConnection", NS, "okta")
            return obj if condition(obj, "Stalled").get("status") == "True" else None

        obj = await cluster.wait_for(stalled, timeout=10)
        bindings = condition(obj, "BindingsValid")
        assert bindings["status"] == "False" and "Superuser" in bindings["message"] and "ops" in bindings["message"]
        assert condition(obj)["reason"] == "UnknownRole"
        assert (await _bundle(cluster))["scim"]["okta"]["groupBindings"] == {"admins": "Admin"}
        events = await cluster.list("v1", "Event", NS)
        assert any(e["reason"] == "UnknownRole" for e in events)


async def test_scim_waits_for_its_idp_and_leaves_with_it(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(scim("okta", idp="okta"))
    async with keyplane_operator():
        async def waiting() -> bool:
            obj = await cluster.get(API, "ScimConnection", NS, "okta")
            return condition(obj, "Reconciling").get("reason") == "IdentityProviderNotFound"

        await cluster.wait_for(waiting, timeout=10)
        await cluster.apply(saml_idp("okta"))
        await _ready_scim(cluster)
        assert "okta" in (await _bundle(cluster))["scim"]
        await cluster.delete(API, "IdentityProvider", NS, "okta")

        async def gone() -> bool:
            return "okta" not in (await _bundle(cluster))["scim"]

        await cluster.wait_for(gone, timeout=10)

        async def says_why() -> bool:
            obj = await cluster.get(API, "ScimConnection", NS, "okta")
            return condition(obj)["reason"] == "IdentityProviderNotFound"

        await cluster.wait_for(says_why, timeout=10)

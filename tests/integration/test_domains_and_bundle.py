"""SSODomain claims and verification, and the bundle's life: cascades, removal, consumer rollouts."""

from __future__ import annotations

import asyncio
from typing import Any

from keyplane.reconcile import namespace as namespace_module
from keyplane.reconcile.ssodomain import challenge_value

from .builders import API, NS, bundle_of, condition, decode, is_ready, namespace, saml_idp, scim, sso_domain


async def _get(cluster: Any, kind: str, name: str) -> dict[str, Any]:
    return dict(await cluster.get(API, kind, NS, name) or {})


async def _bundle(cluster: Any) -> dict[str, Any] | None:
    secret = await cluster.get("v1", "Secret", NS, "keyplane-identity")
    return bundle_of(secret) if secret else None


async def _domains(cluster: Any) -> dict[str, Any]:
    return dict(((await _bundle(cluster)) or {}).get("domains") or {})


async def _reason(cluster: Any, kind: str, name: str, reason: str) -> dict[str, Any] | None:
    obj = await _get(cluster, kind, name)
    return obj if condition(obj).get("reason") == reason else None


async def test_domain_conflict_and_hand_over(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta"))
    await cluster.apply(saml_idp("entra"))
    await cluster.apply(sso_domain("first", ["acme.com"], "okta"))
    await asyncio.sleep(1.1)  # creationTimestamp has second precision: make "first" strictly older
    await cluster.apply(sso_domain("second", ["acme.com", "acme.io"], "entra"))
    async with keyplane_operator():
        obj = await cluster.wait_for(lambda: _reason(cluster, "SSODomain", "second", "DomainClaimed"), timeout=15)
        assert condition(obj, "Stalled")["status"] == "True"
        assert "acme.com" in condition(obj)["message"] and "first" in condition(obj)["message"]
        claimed = {d["name"]: d["claimedBy"] for d in obj["status"]["domains"]}
        assert claimed == {"acme.com": "first", "acme.io": "second"}

        async def owned_by_okta() -> bool:
            domains = await _domains(cluster)
            return domains.get("acme.com", {}).get("identityProvider") == "okta" and "acme.io" in domains

        await cluster.wait_for(owned_by_okta, timeout=10)
        await cluster.delete(API, "SSODomain", NS, "first")
        await cluster.wait_for(lambda: _reason(cluster, "SSODomain", "second", "Ready"), timeout=15)

        async def handed_over() -> bool:
            return (await _domains(cluster)).get("acme.com", {}).get("identityProvider") == "entra"

        await cluster.wait_for(handed_over, timeout=10)


async def test_domain_waits_for_its_idp(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(sso_domain("acme", ["acme.com"], "okta"))
    async with keyplane_operator():
        obj = await cluster.wait_for(
            lambda: _reason(cluster, "SSODomain", "acme", "IdentityProviderNotFound"), timeout=15)
        assert condition(obj, "Reconciling")["status"] == "True"
        assert condition(obj, "IdentityProviderReady")["status"] == "False"
        assert "acme.com" not in await _domains(cluster)
        await cluster.apply(saml_idp("okta"))
        await cluster.wait_for(lambda: _reason(cluster, "SSODomain", "acme", "Ready"), timeout=15)
        assert (await _domains(cluster))["acme.com"]["identityProvider"] == "okta"


class FakeResolver:
    """Stands in for DNS: the test publishes TXT records here."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.lookups: list[str] = []

    async def txt(self, name: str) -> list[str]:
        self.lookups.append(name)
        return list(self.records.get(name, []))


async def test_dns_verification_pending_then_verified(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta"))
    await cluster.apply(sso_domain("acme", ["acme.com"], "okta", verification={"method": "DNS"}))
    async with keyplane_operator() as runtime:
        resolver = FakeResolver()
        runtime.resolver = resolver
        await cluster.apply(sso_domain("acme", ["acme.com"], "okta", verification={"method": "DNS"},
                                       enforcement="Optional"))  # a change, so the fake is consulted
        obj = await cluster.wait_for(
            lambda: _reason(cluster, "SSODomain", "acme", "VerificationPending"), timeout=15)
        record = obj["status"]["verification"][0]
        assert record["recordName"] == "_keyplane-challenge.acme.com"
        assert record["recordValue"] == challenge_value(obj["metadata"]["uid"], NS, "acme", "acme.com")
        assert "acme.com" not in await _domains(cluster)
        resolver.records[record["recordName"]] = ["unrelated", record["recordValue"]]
        # The operator re-checks on a schedule that backs off from a minute; a timer tick may have used
        # the first check before the record was published (likely on a slower API server): re-check now.
        runtime.dns_schedule.clear()
        await cluster.wait_for(lambda: _reason(cluster, "SSODomain", "acme", "Ready"), timeout=15)
        assert (await _domains(cluster))["acme.com"]["enforcement"] == "Optional"
        obj = await _get(cluster, "SSODomain", "acme")
        assert obj["status"]["domains"] == [{"name": "acme.com", "verified": True, "claimedBy": "acme"}]


async def test_deleting_an_idp_cascades_and_the_last_object_removes_the_bundle(
    cluster: Any, keyplane_operator: Any
) -> None:
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta"))
    await cluster.apply(sso_domain("acme", ["acme.com"], "okta"))
    await cluster.apply(scim("okta", idp="okta"))
    async with keyplane_operator():
        async def complete() -> bool:
            bundle = await _bundle(cluster)
            return bool(bundle and bundle["domains"] and bundle["scim"] and bundle["identityProviders"])

        await cluster.wait_for(complete, timeout=15)
        secret = await cluster.get("v1", "Secret", NS, "keyplane-identity")
        owners = {(o["kind"], o["name"]) for o in secret["metadata"]["ownerReferences"]}
        assert owners == {("IdentityProvider", "okta"), ("SSODomain", "acme"), ("ScimConnection", "okta")}
        assert secret["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "keyplane"}

        await cluster.delete(API, "IdentityProvider", NS, "okta")

        async def cascaded() -> bool:
            bundle = await _bundle(cluster)
            return bool(bundle) and bundle == {**bundle, "identityProviders": {}, "domains": {}, "scim": {}}

        await cluster.wait_for(cascaded, timeout=15)
        await cluster.wait_for(
            lambda: _reason(cluster, "SSODomain", "acme", "IdentityProviderNotFound"), timeout=10)
        await cluster.delete(API, "SSODomain", NS, "acme")
        await cluster.delete(API, "ScimConnection", NS, "okta")

        async def removed() -> bool:
            return await cluster.get("v1", "Secret", NS, "keyplane-identity") is None

        await cluster.wait_for(removed, timeout=15)


def _deployment(name: str, consume: bool) -> dict[str, Any]:
    labels = {"app": name, **({"keyplane.dev/consume-identity": "true"} if consume else {})}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}}},
    }


async def test_consumer_deployment_rolls_once_per_bundle_change(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(_deployment("web", consume=True))
    await cluster.apply(_deployment("other", consume=False))
    await cluster.apply(saml_idp("okta"))
    async with keyplane_operator():
        async def stamped() -> str | None:
            dep = await cluster.get("apps/v1", "Deployment", NS, "web")
            return ((dep["spec"]["template"]["metadata"].get("annotations") or {})
                    .get("keyplane.dev/bundle-sha256"))

        first = await cluster.wait_for(stamped, timeout=15)
        secret = await cluster.get("v1", "Secret", NS, "keyplane-identity")
        assert first == secret["metadata"]["annotations"]["keyplane.dev/bundle-sha256"]
        other = await cluster.get("apps/v1", "Deployment", NS, "other")
        assert "annotations" not in other["spec"]["template"]["metadata"]

        await asyncio.sleep(1.0)
        cluster.mark()
        await asyncio.sleep(2.0)  # steady state: no roll
        assert not [w for w in cluster.writes_since_mark() if "deployments" in w]

        await cluster.apply(sso_domain("acme", ["acme.com"], "okta"))

        async def rolled() -> bool:
            value = await stamped()
            return value is not None and value != first

        await cluster.wait_for(rolled, timeout=15)
        await asyncio.sleep(1.5)
        rolls = [w for w in cluster.writes_since_mark() if "deployments/web" in w]
        assert len(rolls) == 1, rolls


async def test_operator_restart_does_not_rewrite_anything(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta", sign=True))
    await cluster.apply(sso_domain("acme", ["acme.com"], "okta"))
    await cluster.apply(scim("okta", idp="okta"))
    async with keyplane_operator():
        async def all_ready() -> bool:
            objs = [await _get(cluster, k, n) for k, n in
                    (("IdentityProvider", "okta"), ("SSODomain", "acme"), ("ScimConnection", "okta"))]
            return all(is_ready(o) for o in objs) and await _bundle(cluster) is not None

        await cluster.wait_for(all_ready, timeout=15)
        await asyncio.sleep(1.0)
        before = await cluster.get("v1", "Secret", NS, "keyplane-identity")
    cluster.mark()
    async with keyplane_operator():
        await asyncio.sleep(2.5)
        after = await cluster.get("v1", "Secret", NS, "keyplane-identity")
        assert after["data"] == before["data"]
        writes = [w for w in cluster.writes_since_mark(ignore_events=True) if "/secrets" in w or "/status" in w]
        assert writes == []


async def test_cluster_scoped_claims_hand_over_across_namespaces(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(namespace("team-b"))
    await cluster.apply(saml_idp("okta"))
    await cluster.apply(saml_idp("okta", ns="team-b"))
    await cluster.apply(sso_domain("acme", ["acme.com"], "okta"))
    await asyncio.sleep(1.1)
    await cluster.apply(sso_domain("acme", ["acme.com"], "okta", ns="team-b"))
    async with keyplane_operator(domain_scope="Cluster"):
        async def claimed() -> bool:
            obj = await cluster.get(API, "SSODomain", "team-b", "acme")
            return condition(obj).get("reason") == "DomainClaimed" and f"{NS}/acme" in condition(obj)["message"]

        await cluster.wait_for(claimed, timeout=15)
        await cluster.delete(API, "SSODomain", NS, "acme")

        async def taken_over() -> bool:
            obj = await cluster.get(API, "SSODomain", "team-b", "acme")
            secret = await cluster.get("v1", "Secret", "team-b", "keyplane-identity")
            return is_ready(obj) and secret is not None and "acme.com" in bundle_of(secret)["domains"]

        await cluster.wait_for(taken_over, timeout=15)


async def test_a_burst_of_changes_gives_a_handful_of_bundle_writes(cluster: Any, keyplane_operator: Any) -> None:
    """An Argo CD sync of a whole folder: 30 objects at once, a few bundle writes, not 30."""
    await cluster.apply(namespace())
    async with keyplane_operator(bundle_debounce=0.3, bundle_max_delay=2.0):
        cluster.mark()
        await asyncio.gather(*(cluster.apply(saml_idp(f"idp-{i}")) for i in range(10)),
                             *(cluster.apply(sso_domain(f"d-{i}", [f"d{i}.example.com"], f"idp-{i}"))
                               for i in range(10)),
                             *(cluster.apply(scim(f"s-{i}", idp=f"idp-{i}")) for i in range(10)))

        async def complete() -> bool:
            bundle = await _bundle(cluster)
            return bool(bundle) and len(bundle["domains"]) == 10 and len(bundle["scim"]) == 10

        await cluster.wait_for(complete, timeout=30)
        await asyncio.sleep(1.0)
        bundle_writes = [
            f"{r.method.value} {r.url.path}" for r in cluster.requests_since_mark()
            if r.method.value in {"POST", "PATCH", "PUT"} and r.resource is not None
            and r.resource.plural == "secrets"
            and (r.name or ((r.data or {}).get("metadata") or {}).get("name")) == "keyplane-identity"
        ]
        assert 1 <= len(bundle_writes) <= 5, bundle_writes


async def test_a_full_bundle_leaves_a_new_tenant_out_until_there_is_room(
    cluster: Any, keyplane_operator: Any, monkeypatch: Any
) -> None:
    """The 1 MiB a Secret holds takes a few hundred tenants to reach (test_render_bundle_limit.py does, with
    `keyplane render`); here the limit for new entries is lowered to just past two tenants, so the whole
    operator loop runs on three (a third would fit in the headroom kept for changes to served entries):
    the third is left out with BundleTooLarge, and comes in once a deletion makes room."""
    await cluster.apply(namespace())
    for name in ("alpha", "bravo"):
        await cluster.apply(saml_idp(name))
        await cluster.apply(sso_domain(name, [f"{name}.example"], name))
    async with keyplane_operator():
        for name in ("alpha", "bravo"):
            await cluster.wait_for(lambda n=name: _reason(cluster, "SSODomain", n, "Ready"), timeout=15)
        secret = await cluster.get("v1", "Secret", NS, "keyplane-identity")
        served = len(decode(secret, "identity.json").encode())
        # New entries may take 500 bytes more (less than a tenant); the Secret holds the headroom more.
        monkeypatch.setattr(namespace_module, "UPDATE_HEADROOM_BYTES", 8192)
        monkeypatch.setattr(namespace_module, "SECRET_DATA_MAX_BYTES", served + 500 + 8192)

        await cluster.apply(saml_idp("charlie"))
        await cluster.apply(sso_domain("charlie", ["charlie.example"], "charlie"))
        idp = await cluster.wait_for(lambda: _reason(cluster, "IdentityProvider", "charlie", "BundleTooLarge"),
                                     timeout=15)
        assert condition(idp, "Stalled")["status"] == "True"
        assert "to another namespace" in condition(idp)["message"]
        await cluster.wait_for(lambda: _reason(cluster, "SSODomain", "charlie", "BundleTooLarge"), timeout=15)
        bundle = await _bundle(cluster)
        assert bundle is not None and set(bundle["identityProviders"]) == {"alpha", "bravo"}
        assert set(bundle["domains"]) == {"alpha.example", "bravo.example"}

        async def warned() -> bool:  # Events follow the statuses
            events = await cluster.list("v1", "Event", NS)
            return {(e["involvedObject"]["kind"], e["involvedObject"]["name"], e["type"])
                    for e in events if e["reason"] == "BundleTooLarge"} == {
                ("IdentityProvider", "charlie", "Warning"), ("SSODomain", "charlie", "Warning")}

        await cluster.wait_for(warned, timeout=10)

        await cluster.delete(API, "SSODomain", NS, "alpha")
        await cluster.delete(API, "IdentityProvider", NS, "alpha")
        await cluster.wait_for(lambda: _reason(cluster, "SSODomain", "charlie", "Ready"), timeout=15)
        bundle = await _bundle(cluster)
        assert bundle is not None and set(bundle["identityProviders"]) == {"bravo", "charlie"}
        assert set(bundle["domains"]) == {"bravo.example", "charlie.example"}

"""Least privilege: the chart grants exactly what the operator uses, no more, no less.

"No less" holds in every integration test: the operator runs with a token of the chart's ServiceAccount
and the `keyplane_operator` fixture fails a test on any 401 or 403. "No more" is checked here: a
representative set of scenarios runs under recording, and every (verb, API group, resource[/subresource])
a rule of the rendered chart grants must have been used by some scenario, in each of the chart's modes
(all namespaces, HA, watched namespaces).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from keyplane.testing import ChartRBAC, register_kopf_peering, render_chart_rbac
from support import chart_cluster, operator_factory

from . import test_domains_and_bundle as domains
from . import test_identity_providers as identity_providers
from . import test_quickstart as quickstart
from . import test_scim_connections as scim_connections

Permission = tuple[str, str, str]  # verb, API group, resource[/subresource]
Scenario = Callable[[Any, Any], Awaitable[None]]



def _used(cluster: Any, rbac: ChartRBAC) -> set[Permission]:
    return {(verb, group, resource + (f"/{sub}" if sub else ""))
            for verb, group, resource, sub, _ in cluster.authorizer.allowed[rbac.user.name]}


async def _run(scenario: Scenario, rbac: ChartRBAC) -> set[Permission]:
    async with chart_cluster() as cluster:
        await scenario(cluster, operator_factory(cluster))
        return _used(cluster, rbac)


def _unused(granted: set[Permission], used: set[Permission]) -> str:
    lines = [f"  {verb} {group or 'core'}/{resource}" for verb, group, resource in sorted(granted - used)]
    return "the chart grants what no scenario uses (cut it, or add the scenario that needs it):\n" + "\n".join(lines)


async def _bundle_deleted_by_the_operator(cluster: Any, keyplane_operator: Any) -> None:
    """When the last object of a namespace goes, the operator deletes the bundle itself (garbage
    collection would too, through the ownerReferences, but a real one takes its time)."""
    docs = await quickstart.apply_quickstart(cluster)
    async with keyplane_operator():
        await cluster.wait_for(lambda: quickstart.all_ready(cluster, docs), timeout=20)
        cluster.mark()
        for doc in docs:
            await cluster.delete(doc["apiVersion"], doc["kind"], quickstart.NS, doc["metadata"]["name"])
        bundle_path = f"/api/v1/namespaces/{quickstart.NS}/secrets/keyplane-identity"

        def deleted_by_the_operator() -> bool:
            return any(r.method.value == "DELETE" and r.url.path == bundle_path
                       and r.headers.get("Authorization") == f"Bearer {cluster.operator_token}"
                       for r in cluster.requests_since_mark())

        await cluster.wait_for(deleted_by_the_operator, timeout=15)


# Together these make every request the operator can make: Kopf's discovery, watches, finalizers and
# Events; status, Secrets (issue, rotate, adopt, delete the bundle), ConfigMap sources, the SP metadata
# ConfigMaps (create, update, delete), consumer rollouts.
SCENARIOS: list[Scenario] = [
    quickstart.test_quickstart_converges_and_writes_the_bundle,
    quickstart.test_sp_metadata_configmaps_follow_their_idps,
    scim_connections.test_annotation_rotates_with_overlap_then_previous_expires,
    domains.test_deleting_an_idp_cascades_and_the_last_object_removes_the_bundle,
    domains.test_consumer_deployment_rolls_once_per_bundle_change,
    identity_providers.test_configmap_source_is_reread_when_the_configmap_changes,
    _bundle_deleted_by_the_operator,
]


async def test_every_rule_of_the_chart_is_used() -> None:
    rbac = render_chart_rbac()
    used: set[Permission] = set()
    for scenario in SCENARIOS:
        used |= await _run(scenario, rbac)
    granted = rbac.granted()
    assert used <= granted  # the fixture already failed the scenario otherwise
    assert granted <= used, _unused(granted, used)


async def _quickstart_in_ha_mode(cluster: Any, keyplane_operator: Any) -> None:
    register_kopf_peering(cluster.emulator)
    await cluster.create({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "keyplane"}})
    docs = await quickstart.apply_quickstart(cluster)
    async with keyplane_operator(peering_name="keyplane", priority=1):
        await cluster.wait_for(lambda: quickstart.all_ready(cluster, docs), timeout=20)

        async def announced() -> bool:
            peering = await cluster.get("kopf.dev/v1", "ClusterKopfPeering", None, "keyplane")
            return bool((peering or {}).get("status"))

        await cluster.wait_for(announced, timeout=10)


async def test_the_ha_rules_are_used_by_a_peered_operator() -> None:
    """HA mode adds the peering rules: a peered replica (Kopf's heartbeats) uses every one of them."""
    ha = render_chart_rbac({"ha": {"enabled": True}})
    ha_only = ha.granted() - render_chart_rbac().granted()
    assert ha_only, "the HA chart grants nothing for peering"
    used = await _run(_quickstart_in_ha_mode, ha)
    assert ha_only <= used, _unused(ha_only, used)


async def _quickstart_in_one_namespace(cluster: Any, keyplane_operator: Any) -> None:
    docs = await quickstart.apply_quickstart(cluster)
    async with keyplane_operator(namespaces=[quickstart.NS]):
        await cluster.wait_for(lambda: quickstart.all_ready(cluster, docs), timeout=20)


async def test_watched_namespaces_work_with_roles_and_use_every_cluster_rule() -> None:
    """watchNamespaces: everything namespaced comes from a Role in the namespace (the same rules as
    above), Kopf's CRD and namespace observation from a small ClusterRole; the quickstart converges with
    no more than that, and uses every cluster-wide rule."""
    rbac = render_chart_rbac({"watchNamespaces": [quickstart.NS]})
    assert {obj["kind"] for obj in rbac.objects} >= {"Role", "RoleBinding", "ClusterRole"}
    used = await _run(_quickstart_in_one_namespace, rbac)
    cluster_wide = rbac.granted(kinds=("ClusterRole",))
    assert cluster_wide <= used, _unused(cluster_wide, used)

"""Two operator processes against one API server (HA mode, Kopf peering): only one acts; when it leaves,
the other takes over."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faultkit import assert_no_crash, bundle, captured_logs, inline_idp, is_ready, namespace, scim, secret_value

from keyplane.testing import register_kopf_peering

GV = "keyplane.dev/v1alpha1"
NS = "faults-peering"


async def _peers(cluster: Any) -> dict[str, Any]:
    obj = await cluster.get("kopf.dev/v1", "ClusterKopfPeering", None, "keyplane")
    return dict((obj or {}).get("status") or {})


async def _joined(cluster: Any, count: int) -> bool:
    return len(await _peers(cluster)) == count


@pytest.mark.slow
async def test_only_the_highest_priority_replica_acts(cluster: Any, keyplane_operator: Any) -> None:
    register_kopf_peering(cluster.emulator)
    await cluster.create({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "keyplane"}})
    await cluster.create(namespace(NS))
    with captured_logs() as logs:
        async with keyplane_operator(peering_name="keyplane", priority=100) as leader:
            await cluster.wait_for(lambda: _joined(cluster, 1), timeout=10)  # the leader's heartbeat is there
            async with keyplane_operator(peering_name="keyplane", priority=50) as standby:
                # Kopf starts a peered replica paused; it resumes only on a peering event without a
                # higher-priority peer, and every such event now lists the leader. So once the standby
                # has joined (its keep-alive is in the peering object), it stays paused.
                await cluster.wait_for(lambda: _joined(cluster, 2), timeout=10)
                await cluster.create(inline_idp("okta", NS))
                await cluster.create(scim("okta", NS, idp="okta"))

                async def converged() -> bool:
                    idp = await cluster.get(GV, "IdentityProvider", NS, "okta")
                    conn = await cluster.get(GV, "ScimConnection", NS, "okta")
                    return is_ready(idp) and is_ready(conn) and bool((await bundle(cluster, NS) or {}).get("scim"))

                await cluster.wait_for(converged, timeout=20)
                # The standby received every event the leader did, while paused: it observed nothing.
                assert leader.tokens and leader.idp_observations
                assert not standby.tokens and not standby.idp_observations, "the standby acted"
                assert standby.writer is None or standby.writer.flush_count == 0
                token = secret_value(await cluster.get("v1", "Secret", NS, "okta-scim-token"))

            # The standby left; the leader keeps going alone.
        # The leader left too. A new replica (any priority) takes over and keeps the same token.
        async with keyplane_operator(peering_name="keyplane", priority=10) as successor:
            await cluster.patch(GV, "ScimConnection", NS, "okta",
                                {"metadata": {"annotations": {"keyplane.dev/rotate-token": "after-failover"}}})

            async def rotated() -> bool:
                entry = ((await bundle(cluster, NS)) or {}).get("scim", {}).get("okta") or {}
                return len(entry.get("tokenHashes") or []) == 2

            await cluster.wait_for(rotated, timeout=20)
            assert successor.tokens
            secrets = [s for s in await cluster.list("v1", "Secret", NS)
                       if s["metadata"]["name"].endswith("-scim-token")]
            assert len(secrets) == 1
            assert secret_value(secrets[0]) != token
    assert_no_crash(logs.text())


@pytest.mark.slow
async def test_a_replica_paused_by_a_higher_priority_one_stops_its_periodic_checks(
    cluster: Any, keyplane_operator: Any
) -> None:
    """Kopf stops its own timers on a pause; the sweep that replaced them must stand down as well, or a
    replica demoted during a rolling update would keep refreshing and rotating from stale indexes."""
    register_kopf_peering(cluster.emulator)
    await cluster.create({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "keyplane"}})
    await cluster.create(namespace(NS))
    with captured_logs() as logs:
        async with keyplane_operator(peering_name="keyplane", priority=50) as first:
            await cluster.create(inline_idp("okta", NS))
            await cluster.create(scim("okta", NS, idp="okta"))
            await cluster.wait_for(lambda: _is_ready(cluster, "ScimConnection", "okta"), timeout=20)
            await _wait_until(lambda: first.sweeper.checks >= 4, timeout=10)  # both objects, each second
            async with keyplane_operator(peering_name="keyplane", priority=100) as second:
                await cluster.wait_for(lambda: _joined(cluster, 2), timeout=10)
                await _wait_until(lambda: second.sweeper.checks >= 4, timeout=20)  # the new leader checks
                demoted_at = first.sweeper.checks
                await asyncio.sleep(3 * first.settings.timer_interval)
                assert first.sweeper.checks == demoted_at, "the paused replica kept checking"
                assert second.sweeper.checks >= 4
    assert "Pausing operations in favour of" in logs.text()
    assert_no_crash(logs.text())


async def _is_ready(cluster: Any, kind: str, name: str) -> bool:
    return is_ready(await cluster.get(GV, kind, NS, name))


async def _wait_until(condition: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)

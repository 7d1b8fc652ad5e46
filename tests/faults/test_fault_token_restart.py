"""The operator dies right after each of its writes while issuing and while rotating a SCIM token.

For every step k, the operator is cut off the API server after its k-th write in the namespace (all later
writes refused, as if the process had died there), stopped, and a fresh operator is started. Afterwards:
exactly one token Secret, the token that was already written is kept (never re-issued, never rotated twice),
the bundle carries the current token's hash, and after a rotation the previous token stays valid until its
overlap ends.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from faultkit import (
    WriteGate,
    assert_no_crash,
    bundle,
    captured_logs,
    conditions,
    is_ready,
    namespace,
    scim,
    secret_value,
    sha256,
)

GV = "keyplane.dev/v1alpha1"
ROTATE = "keyplane.dev/rotate-token"


async def _token(cluster: Any, ns: str) -> str | None:
    return secret_value(await cluster.get("v1", "Secret", ns, "okta-scim-token"))


async def _converged(cluster: Any, ns: str) -> bool:
    obj = await cluster.get(GV, "ScimConnection", ns, "okta")
    token = await _token(cluster, ns)
    entry = ((await bundle(cluster, ns)) or {}).get("scim", {}).get("okta")
    return bool(is_ready(obj) and token and entry and entry["tokenHashes"][0]["sha256"] == sha256(token))


async def _token_secrets(cluster: Any, ns: str) -> list[dict[str, Any]]:
    return [s for s in await cluster.list("v1", "Secret", ns)
            if (s["metadata"].get("labels") or {}).get("keyplane.dev/owner-kind") == "ScimConnection"]


async def _clean_run_writes(cluster: Any, keyplane_operator: Any, ns: str, rotate: bool) -> list[str]:
    """The operator's writes in a run that is not interrupted (to know how many steps there are)."""
    await cluster.create(namespace(ns))
    await cluster.create(scim("okta", ns))
    gate = WriteGate(ns)
    with gate.installed():
        async with keyplane_operator():
            await cluster.wait_for(lambda: _converged(cluster, ns), timeout=15)
            if rotate:
                gate.passed.clear()
                await cluster.patch(GV, "ScimConnection", ns, "okta", {"metadata": {"annotations": {ROTATE: "r1"}}})

                async def rotated() -> bool:
                    entry = ((await bundle(cluster, ns)) or {}).get("scim", {}).get("okta") or {}
                    return len(entry.get("tokenHashes") or []) == 2 and await _converged(cluster, ns)

                await cluster.wait_for(rotated, timeout=15)
            await cluster.wait_for(lambda: _settled(cluster, ns), timeout=10)
    return list(gate.passed)


async def _settled(cluster: Any, ns: str) -> bool:
    obj = await cluster.get(GV, "ScimConnection", ns, "okta")
    return bool(obj and obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"])


@pytest.mark.slow
async def test_killed_at_every_step_of_the_first_issue(cluster: Any, keyplane_operator: Any) -> None:
    steps = await _clean_run_writes(cluster, keyplane_operator, "issue-clean", rotate=False)
    assert any("secrets" in s for s in steps), steps
    with captured_logs() as logs:
        for k in range(len(steps)):
            ns = f"issue-kill-{k}"
            await cluster.create(namespace(ns))
            await cluster.create(scim("okta", ns))
            gate = WriteGate(ns, allow=k)
            with gate.installed():
                async with keyplane_operator():
                    await cluster.wait_for(lambda g=gate, n=k: len(g.passed) >= n and g.refused, timeout=15)
                token_at_kill = await _token(cluster, ns)
                gate.open = True
                gate.allow = None
                async with keyplane_operator():
                    await cluster.wait_for(lambda n=ns: _converged(cluster, n), timeout=15)
            token = await _token(cluster, ns)
            if token_at_kill is not None:
                assert token == token_at_kill, f"step {k} ({steps[k - 1] if k else '-'}): token re-issued"
            assert len(await _token_secrets(cluster, ns)) == 1
            obj = await cluster.get(GV, "ScimConnection", ns, "okta")
            assert conditions(obj)["TokenIssued"]["status"] == "True"
            entry = (await bundle(cluster, ns))["scim"]["okta"]  # type: ignore[index]
            assert [h["sha256"] for h in entry["tokenHashes"]] == [sha256(token or "")]
    assert_no_crash(logs, allow=("Throttling for",))  # Kopf's own refused patches, on purpose


@pytest.mark.slow
async def test_killed_at_every_step_of_a_rotation(cluster: Any, keyplane_operator: Any) -> None:
    steps = await _clean_run_writes(cluster, keyplane_operator, "rotate-clean", rotate=True)
    assert any("secrets/okta-scim-token" in s for s in steps), steps
    with captured_logs() as logs:
        for k in range(len(steps)):
            ns = f"rotate-kill-{k}"
            await cluster.create(namespace(ns))
            await cluster.create(scim("okta", ns))
            gate = WriteGate(ns)
            with gate.installed():
                async with keyplane_operator():
                    await cluster.wait_for(lambda n=ns: _converged(cluster, n), timeout=15)
                    await cluster.wait_for(lambda n=ns: _settled(cluster, n), timeout=10)
                    first = await _token(cluster, ns)
                    gate.passed.clear()
                    gate.allow = k
                    await cluster.patch(GV, "ScimConnection", ns, "okta",
                                        {"metadata": {"annotations": {ROTATE: "r1"}}})
                    await cluster.wait_for(lambda g=gate, n=k: len(g.passed) >= n and g.refused, timeout=15)
                token_at_kill = await _token(cluster, ns)
                gate.allow = None
                async with keyplane_operator():
                    async def rotated(n: str = ns) -> bool:
                        entry = ((await bundle(cluster, n)) or {}).get("scim", {}).get("okta") or {}
                        return len(entry.get("tokenHashes") or []) == 2 and await _converged(cluster, n)

                    await cluster.wait_for(rotated, timeout=15)
            current = await _token(cluster, ns)
            assert current != first, f"step {k}: the rotation was lost"
            if token_at_kill != first:
                assert current == token_at_kill, f"step {k} ({steps[k - 1]}): rotated twice"
            assert len(await _token_secrets(cluster, ns)) == 1
            hashes = (await bundle(cluster, ns))["scim"]["okta"]["tokenHashes"]  # type: ignore[index]
            assert hashes[0] == {"sha256": sha256(current or ""), "notAfter": None}, (
                f"step {k}: bundle {hashes} vs token {sha256(current or '')[:12]}, first {sha256(first or '')[:12]}, "
                f"at kill {sha256(token_at_kill or '')[:12]}; writes {gate.passed}")
            assert hashes[1]["sha256"] == sha256(first or "")  # the previous token is still honoured...
            not_after = datetime.datetime.fromisoformat(hashes[1]["notAfter"].replace("Z", "+00:00"))
            remaining = not_after - datetime.datetime.now(datetime.UTC)
            assert datetime.timedelta(hours=23) < remaining <= datetime.timedelta(hours=24)  # ...for the overlap
    assert_no_crash(logs, allow=("Throttling for",))  # Kopf's own refused patches, on purpose

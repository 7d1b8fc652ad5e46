"""SCIM throughput of keyplane.app on the SQLite default: GET by filter and PATCH of group membership.

The store is seeded through the storage API (not HTTP); the requests then go through the whole
ASGI SCIM app in-process (token check, scim2-server protocol, SQL storage), one at a time.
Run: ``python bench/scim_bench.py [n_users n_groups]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from typing import Any

import httpx

from keyplane.app import Bundle, BundleStore, ScimRouter, Storage

TOKEN = "bench-token"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MEMBERS_PER_GROUP = 10


def bundle_document() -> dict[str, Any]:
    """One SCIM connection, `bench`, with TOKEN: the bundle both SCIM benchmarks serve."""
    return {
        "apiVersion": "keyplane.dev/bundle-v1",
        "roles": ["Admin", "Member", "Viewer"],
        "identityProviders": {},
        "domains": {},
        "scim": {
            "bench": {
                "endpointPath": "/scim/v2/bench",
                "identityProvider": None,
                "tokenHashes": [{"sha256": hashlib.sha256(TOKEN.encode()).hexdigest(), "notAfter": None}],
                "defaultUserRole": "Member",
                "groupBindings": {"group-0": "Admin"},
                "unboundGroupRole": "None",
            }
        },
    }


def _bundle() -> Bundle:
    return Bundle.from_dict(bundle_document())


def _seed(router: ScimRouter, n_users: int, n_groups: int) -> tuple[list[str], list[str]]:
    storage = router.storage_for("bench")
    user_type, group_type = router.provider.resource_types[0], router.provider.resource_types[1]
    user_model, group_model = router.provider.model_for(user_type), router.provider.model_for(group_type)
    users = [
        user_model.model_validate(
            {
                "schemas": [USER],
                "userName": f"user{i}@bench.example",
                "externalId": f"ext-{i}",
                "active": True,
                "name": {"givenName": f"Given{i}", "familyName": "Bench"},
                "emails": [{"value": f"user{i}@bench.example", "type": "work", "primary": True}],
            }
        )
        for i in range(n_users)
    ]
    user_ids = storage.create_many(user_type, users)
    groups = []
    for g in range(n_groups):
        first = (g * MEMBERS_PER_GROUP) % max(n_users, 1)
        member_ids = [user_ids[(first + k) % n_users] for k in range(min(MEMBERS_PER_GROUP, n_users))]
        groups.append(
            group_model.model_validate(
                {
                    "schemas": [GROUP],
                    "displayName": f"group-{g}",
                    "members": [{"value": m} for m in member_ids],
                }
            )
        )
    group_ids = storage.create_many(group_type, groups)
    return user_ids, group_ids


def _stats(latencies: list[float], elapsed: float) -> dict[str, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
    }


async def _measure(
    router: ScimRouter, user_ids: list[str], group_ids: list[str], n_requests: int
) -> dict[str, Any]:
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=router), base_url="http://bench", headers=headers
    ) as client:
        for _ in range(20):  # warm up
            await client.get("/scim/v2/bench/Users", params={"filter": 'userName eq "user0@bench.example"'})

        latencies: list[float] = []
        start = time.perf_counter()
        for _ in range(n_requests):
            i = rng.randrange(len(user_ids))
            t = time.perf_counter()
            r = await client.get(
                "/scim/v2/bench/Users", params={"filter": f'userName eq "user{i}@bench.example"'}
            )
            latencies.append(time.perf_counter() - t)
            assert r.status_code == 200 and r.json()["totalResults"] == 1, r.text
        results["get_user_by_filter"] = _stats(latencies, time.perf_counter() - start)

        latencies = []
        start = time.perf_counter()
        for _ in range(n_requests):
            name = f"group-{rng.randrange(len(group_ids))}"
            t = time.perf_counter()
            r = await client.get(
                "/scim/v2/bench/Groups",
                params={"filter": f'displayName eq "{name}"', "excludedAttributes": "members"},
            )
            latencies.append(time.perf_counter() - t)
            assert r.status_code == 200 and r.json()["totalResults"] == 1, r.text
        results["get_group_by_filter"] = _stats(latencies, time.perf_counter() - start)

        latencies = []
        start = time.perf_counter()
        for n in range(n_requests):
            group_id = group_ids[rng.randrange(len(group_ids))]
            user_id = user_ids[rng.randrange(len(user_ids))]
            # Alternate Okta-style add and Entra-style remove of the same member.
            operations = [{"op": "add", "path": "members", "value": [{"value": user_id}]}]
            t = time.perf_counter()
            r = await client.patch(
                f"/scim/v2/bench/Groups/{group_id}", json={"schemas": [PATCH], "Operations": operations}
            )
            if n % 2:
                await client.patch(
                    f"/scim/v2/bench/Groups/{group_id}",
                    json={
                        "schemas": [PATCH],
                        "Operations": [{"op": "Remove", "path": "members", "value": [{"value": user_id}]}],
                    },
                )
            latencies.append(time.perf_counter() - t if not n % 2 else (time.perf_counter() - t) / 2)
            assert r.status_code in (200, 204), r.text
        elapsed = time.perf_counter() - start
        patches = n_requests + n_requests // 2
        stats = _stats(latencies, elapsed)
        stats["requests"] = patches
        stats["rps"] = round(patches / elapsed, 1)
        results["patch_group_membership"] = stats
    return results


def run(n_users: int = 10_000, n_groups: int = 1_000, n_requests: int = 400) -> dict[str, Any]:
    """Seed ``n_users`` users and ``n_groups`` groups in a SQLite file, then measure SCIM requests."""
    with tempfile.TemporaryDirectory() as directory:
        storage = Storage(f"sqlite:///{os.path.join(directory, 'bench.db')}")
        router = ScimRouter(BundleStore.from_bundle(_bundle()), storage)
        start = time.perf_counter()
        user_ids, group_ids = _seed(router, n_users, n_groups)
        seed_s = time.perf_counter() - start
        results = asyncio.run(_measure(router, user_ids, group_ids, n_requests))
        storage.engine.dispose()
    return {
        "n_users": n_users,
        "n_groups": n_groups,
        "storage": "sqlite (file, WAL)",
        "seed_seconds": round(seed_s, 2),
        **results,
    }


def _table(results: dict[str, Any]) -> str:
    lines = [
        f"users={results['n_users']} groups={results['n_groups']} storage={results['storage']} "
        f"seed={results['seed_seconds']}s",
        f"{'operation':<26}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}",
    ]
    for name in ("get_user_by_filter", "get_group_by_filter", "patch_group_membership"):
        row = results[name]
        lines.append(f"{name:<26}{row['requests']:>10}{row['rps']:>10}{row['p50_ms']:>10}{row['p99_ms']:>10}")
    return "\n".join(lines)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(_table(run(*args)))

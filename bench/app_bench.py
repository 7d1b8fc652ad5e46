"""The app side on one and two replicas: SCIM create / filter / group PATCH, SQLite vs PostgreSQL.

For each shape (SQLite file with one replica, PostgreSQL with one and with two replicas, and SQLite with two
for contrast) the database is seeded with N users and N/10 groups (10 members each) through the storage API,
then the replicas run as separate processes (uvicorn on 127.0.0.1, the whole ``Keyplane(...).asgi()``)
and a client keeps CONCURRENCY requests in flight, spread round-robin over the replicas, as an IdP
pushing changes in parallel does. Per operation: requests, throughput (req/s) and latency p50 / p99.

* create: ``POST /Users`` of new users;
* filter: ``GET /Users?filter=userName eq "..."`` of random seeded users;
* group PATCH: Okta-style ``add`` of a random user to a random group.

PostgreSQL is a throw-away server (``keyplane.testing.postgres``), durability off like the tests' one
(``fsync=off``): the figures are the app's and the SQL's cost, not a disk's.
Run alone: ``python -m bench.app_bench [n_users [requests]]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from keyplane.app import Bundle, BundleStore, ScimRouter, Storage

from .convergence import free_port
from .scim_bench import PATCH, TOKEN, USER, _seed, _stats, bundle_document

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 8
SCIM = bundle_document()["scim"]["bench"]["endpointPath"]


@contextmanager
def _replicas(count: int, database_url: str, folder: Path) -> Any:
    bundle = folder / "identity.json"
    bundle.write_text(json.dumps(bundle_document()))
    env = {**os.environ, "KEYPLANE_BUNDLE": str(bundle), "KEYPLANE_DATABASE_URL": database_url,
           "KEYPLANE_SECRET_KEY": "bench"}  # fmt: skip
    processes, urls = [], []
    for _ in range(count):
        port = free_port()
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "bench.app_replica:build", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log", "--lifespan", "off",
             # Longer than any pause between requests: an idle keep-alive connection closed by the server
             # just as the client reuses it would be a client-side ReadError, not a figure of the app.
             "--timeout-keep-alive", "300"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        ))  # fmt: skip
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url in urls:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}{SCIM}/ServiceProviderConfig", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {url} did not start")
                time.sleep(0.1)
        yield urls, [process.pid for process in processes]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)


async def _load(urls: list[str], requests: list[tuple[str, str, dict[str, Any]]]) -> dict[str, float]:
    """Send ``(method, path, kwargs)`` requests with CONCURRENCY in flight, round-robin over ``urls``."""
    latencies: list[float] = []
    queue = list(enumerate(requests))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
    limits = httpx.Limits(max_connections=CONCURRENCY * len(urls))
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:

        async def worker() -> None:
            while queue:
                index, (method, path, kwargs) = queue.pop()
                started = time.perf_counter()
                r = await client.request(method, urls[index % len(urls)] + path, **kwargs)
                latencies.append(time.perf_counter() - started)
                if r.status_code >= 300:
                    raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:200]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return _stats(latencies, time.perf_counter() - start)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the replica processes so far (/proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


async def _timed(urls: list[str], pids: list[int], requests: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    """:func:`_load`, plus the replicas' CPU per request: a figure that a busy machine distorts less."""
    before = _cpu_seconds(pids)
    stats: dict[str, Any] = await _load(urls, requests)
    stats["replica_cpu_ms_per_request"] = round((_cpu_seconds(pids) - before) * 1000 / len(requests), 2)
    return stats


async def _measure(
    urls: list[str], pids: list[int], user_ids: list[str], group_ids: list[str], n: int, tag: str
) -> dict[str, Any]:
    rng = random.Random(11)
    creates = [
        ("POST", f"{SCIM}/Users", {"json": {"schemas": [USER], "userName": f"new-{tag}-{i}@bench.example",
                                            "emails": [{"value": f"new-{tag}-{i}@bench.example", "primary": True}]}})
        for i in range(n)
    ]  # fmt: skip
    filters = [
        ("GET", f"{SCIM}/Users", {"params": {"filter": f'userName eq "user{i}@bench.example"'}})
        for i in (rng.randrange(len(user_ids)) for _ in range(n))
    ]  # fmt: skip
    patches = [
        ("PATCH", f"{SCIM}/Groups/{rng.choice(group_ids)}",
         {"json": {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members",
                                                       "value": [{"value": rng.choice(user_ids)}]}]}})
        for _ in range(n)
    ]  # fmt: skip
    await _load(urls, filters[:50])  # warm up (connections, caches)
    return {
        "create": await _timed(urls, pids, creates),
        "filter": await _timed(urls, pids, filters),
        "group_patch": await _timed(urls, pids, patches),
    }


def _seed_database(database_url: str, n_users: int, n_groups: int) -> tuple[list[str], list[str], float]:
    storage = Storage(database_url)
    router = ScimRouter(BundleStore.from_bundle(Bundle.from_dict(bundle_document())), storage)
    start = time.perf_counter()
    user_ids, group_ids = _seed(router, n_users, n_groups)
    seconds = time.perf_counter() - start
    storage.engine.dispose()
    return user_ids, group_ids, seconds


def run(n_users: int = 10_000, n_groups: int = 1_000, n_requests: int = 400) -> dict[str, Any]:
    """Every shape; PostgreSQL shapes are skipped (with the reason) where no server binaries exist."""
    from keyplane.testing.postgres import PostgresServer, find_binaries

    results: dict[str, Any] = {"n_users": n_users, "n_groups": n_groups, "requests_per_operation": n_requests,
                               "concurrency": CONCURRENCY, "cpus": os.cpu_count(),
                               "load_average_before": round(os.getloadavg()[0], 1), "shapes": {}}  # fmt: skip
    server = PostgresServer().start() if find_binaries() is not None else None
    try:
        with tempfile.TemporaryDirectory() as directory:
            folder = Path(directory)
            shapes: list[tuple[str, str | None, int]] = [
                ("sqlite, 1 replica", f"sqlite:///{folder / 'one.db'}", 1),
                ("sqlite, 2 replicas", f"sqlite:///{folder / 'two.db'}", 2),
                ("postgresql, 1 replica", server.create_database("bench_one") if server else None, 1),
                ("postgresql, 2 replicas", server.create_database("bench_two") if server else None, 2),
            ]
            for name, url, count in shapes:
                if url is None:
                    results["shapes"][name] = {"skipped": "no PostgreSQL server binaries (make postgres)"}
                    continue
                print(f"[app bench] {name}: seeding {n_users} users, {n_groups} groups", file=sys.stderr)
                user_ids, group_ids, seed_s = _seed_database(url, n_users, n_groups)
                with _replicas(count, url, folder) as (urls, pids):
                    tag = name.replace(" ", "").replace(",", "")
                    measured = asyncio.run(_measure(urls, pids, user_ids, group_ids, n_requests, tag))
                results["shapes"][name] = {"seed_seconds": round(seed_s, 1), **measured}
    finally:
        if server is not None:
            server.stop()
    results["load_average_after"] = round(os.getloadavg()[0], 1)
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        f"app side: {results['n_users']} users, {results['n_groups']} groups, "
        f"{results['requests_per_operation']} requests per operation, {results['concurrency']} in flight, "
        f"{results['cpus']} CPUs, load average {results['load_average_before']} -> {results['load_average_after']}",
        f"{'shape':<24}{'operation':<13}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'app CPU ms/req':>16}",
    ]
    for shape, row in results["shapes"].items():
        if "skipped" in row:
            lines.append(f"{shape:<24}skipped: {row['skipped']}")
            continue
        for operation in ("create", "filter", "group_patch"):
            stats = row[operation]
            lines.append(
                f"{shape:<24}{operation:<13}{stats['rps']:>8}{stats['p50_ms']:>9}{stats['p99_ms']:>9}"
                f"{stats['replica_cpu_ms_per_request']:>16}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    arguments = [int(a) for a in sys.argv[1:3]]
    n = arguments[0] if arguments else 10_000
    print(table(run(n, max(10, n // 10), *arguments[1:2])))

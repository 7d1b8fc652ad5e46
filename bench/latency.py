"""One object's latency under load: probe IdentityProviders applied in their own namespace during a burst.

While the operator is busy with the N=1000 burst (3000 objects in the bench-NN namespaces), the bench
creates PROBES IdentityProviders, one every SPACING seconds, in namespace `bench-probe`, and records
for each the time from its create request's answer to the first version of it with `Ready=True`
(the user's view: `kubectl apply` then `kubectl wait --for=condition=Ready`). Ready is only written
after the probe's namespace bundle, so this includes the bundle write.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections.abc import Callable
from typing import Any

import kmock

from keyplane.testing import EmulatedCluster
from keyplane.testing.emulator import requests_intercepted

from . import workload
from .harness import as_applied, placed_namespace

NAMESPACE = "bench-probe"
PROBES = 10
SPACING = 2.0  # 10 probes within the first ~20 s: all while the N=1000 burst (~25 s) converges
FIRST_AFTER = 2.0  # seconds after the burst's first create
IDPS = kmock.resource("keyplane.dev", "v1alpha1", "identityproviders")


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100): with few samples p99 is the worst one, not an interpolation."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def api_latency(requests: list[Any]) -> dict[str, Any] | None:
    """p50/p99 seconds until the API server answered the operator's requests (watches left out); only a
    real API server's are timed (bench/external.py), the emulator answers in the operator's own turn."""
    timed = [r.seconds for r in requests
             if getattr(r, "seconds", None) is not None and r.action != kmock.action.WATCH]
    if not timed:
        return None
    return {"requests": len(timed), "p50_s": round(percentile(timed, 50), 3),
            "p99_s": round(percentile(timed, 99), 3), "max_s": round(max(timed), 3)}


def namespace() -> str:
    """The probes' namespace in this run (renamed per run on a real cluster, `--kubeconfig`)."""
    return placed_namespace(NAMESPACE)


def probe_manifest(i: int) -> dict[str, Any]:
    doc = workload.idp_manifest(i, 1, metadata={"inline": workload.inline_metadata()})
    doc["metadata"] = {"name": f"probe-{i:02d}", "namespace": namespace()}
    return doc


class ReadyTimes:
    """Reads the emulator's IdentityProvider event log (in memory) for the first Ready=True of each probe,
    and its request log for when the probe's first modifying request from Kopf (its finalizer) arrived:
    what the time to Ready is spent waiting for."""

    def __init__(self, cluster: EmulatedCluster) -> None:
        self.emu = cluster.emulator
        self.namespace = namespace()
        self.ready_at: dict[str, float] = {}
        self.kopf_first_write_at: dict[str, float] = {}
        # When each of a probe's writes reached the emulator (`time_write`, while the probes run):
        # where the time to Ready goes, Kopf's part and the operator's.
        self.writes: dict[str, list[tuple[float, str]]] = {}
        self.created_at: dict[str, float] = {}
        self._cursor = 0
        self._requests_seen = 0

    async def time_write(self, emu: Any, request: kmock.Request, forward: Any) -> Any:
        """Note when each write of a probe reaches this emulator (`requests_intercepted`), then serve it."""
        if emu is self.emu and request.method.value in ("POST", "PATCH", "PUT") \
                and f"/namespaces/{self.namespace}/" in request.url.path:
            agent = (request.headers.get("User-Agent") or "").lower()
            what = f"{'kopf' if 'kopf' in agent else 'keyplane'} {request.method.value} " \
                   f"{request.url.path.split(f'/namespaces/{self.namespace}/', 1)[1]}"
            arrived = time.monotonic()
            for name in list(self.created_at):
                if f"/{name}" in what:
                    self.writes.setdefault(name, []).append((arrived, what))
        return await forward(request)

    def poll(self) -> None:
        now = time.monotonic()
        requests = list(self.emu)
        for request in requests[self._requests_seen:]:
            agent = request.headers.get("User-Agent") or request.headers.get("user-agent") or ""
            if (request.method.value == "PATCH" and f"/namespaces/{self.namespace}/" in request.url.path
                    and "kopf" in agent.lower() and request.name):
                self.kopf_first_write_at.setdefault(str(request.name), now)
        self._requests_seen = len(requests)
        log = self.emu._logs.get(IDPS)
        if log is None:
            return
        events = log.events[bisect.bisect_right(log.events, self._cursor, key=lambda e: e[0]):]
        if events:
            self._cursor = events[-1][0]
        for _rv, etype, body, _old in events:
            meta = body["metadata"]
            if meta["namespace"] != self.namespace or etype == "DELETED" or meta["name"] in self.ready_at:
                continue
            conds = (body.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                self.ready_at[meta["name"]] = now


async def _loop_lag(samples: list[float], period: float = 0.1) -> None:
    while True:
        asleep = time.monotonic()
        await asyncio.sleep(period)
        samples.append(max(0.0, time.monotonic() - asleep - period))


async def probe_during(cluster: EmulatedCluster, busy: Callable[[], bool], *, probes: int = PROBES,
                       spacing: float = SPACING, timeout: float = 300.0, poll: float = 0.05) -> dict[str, Any]:
    """Create the probes while `busy()` (the burst is not converged yet); their time to Ready."""
    ready = ReadyTimes(cluster)
    created: dict[str, float] = {}
    during: dict[str, bool] = {}

    async def inject() -> None:
        await asyncio.sleep(FIRST_AFTER)
        for i in range(probes):
            doc = probe_manifest(i)
            during[doc["metadata"]["name"]] = busy()
            await cluster.create(as_applied(doc))
            created[doc["metadata"]["name"]] = ready.created_at[doc["metadata"]["name"]] = time.monotonic()
            await asyncio.sleep(spacing)

    lag: list[float] = []
    lag_sampler = asyncio.create_task(_loop_lag(lag))
    injector = asyncio.create_task(inject())
    started = time.monotonic()
    try:
        with requests_intercepted(ready.time_write):
            while not (injector.done() and set(created) <= set(ready.ready_at)):
                if time.monotonic() - started > timeout:
                    break
                ready.poll()
                await asyncio.sleep(poll)
            await injector
    finally:
        lag_sampler.cancel()
    seconds = {name: round(ready.ready_at[name] - t, 3) for name, t in created.items() if name in ready.ready_at}
    kopf_first_write = {name: round(ready.kopf_first_write_at[name] - t, 3) for name, t in created.items()
                        if name in ready.kopf_first_write_at}
    samples = list(seconds.values())
    mid_burst = [v for name, v in seconds.items() if during.get(name)]
    return {
        "probes": probes, "namespace": ready.namespace, "spacing_s": spacing,
        "created_during_burst": sum(during.values()), "ready": len(samples),
        "p50_s": round(percentile(samples, 50), 3) if samples else None,
        "p99_s": round(percentile(samples, 99), 3) if samples else None,
        # Over the probes created while the burst was still converging only (the load the target is about).
        "mid_burst_p50_s": round(percentile(mid_burst, 50), 3) if mid_burst else None,
        "mid_burst_p99_s": round(percentile(mid_burst, 99), 3) if mid_burst else None,
        "seconds": seconds,
        # Seconds from the create until Kopf's first write to the probe (its finalizer) reached the API.
        "kopf_first_write_s": kopf_first_write,
        # How late the emulator's event loop (this process's: it serves the API) woke up, sampled every 0.1 s
        # while the probes ran: every request and watch event of the probe waited at least this long.
        "emulator_loop_lag_s": {"p50": round(percentile(lag, 50), 3), "p99": round(percentile(lag, 99), 3),
                                "max": round(max(lag), 3)} if lag else None,
        # Each write of a probe (Kopf's finalizer and annotations, the operator's status), seconds after the create.
        "writes": {name: [(round(t - created[name], 3), what) for t, what in ready.writes.get(name, [])]
                   for name in created},
    }

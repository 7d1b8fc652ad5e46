"""The emulated API server in this process, an operator (Keyplane or the floor) in a subprocess.

The operator runs as its own process, as in production: `python -m keyplane run` (or `python -m
bench.floor`) with KUBECONFIG pointing at the emulator served from here. Progress is read straight
from the emulator's memory (no HTTP polling adds load); requests are counted from its request log.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import kmock

from keyplane.api.crds import all_crds
from keyplane.testing import EmulatedCluster, emulated_cluster

from . import kmock_fastpath

ROOT = Path(__file__).resolve().parents[1]
SECRETS = kmock.resource("", "v1", "secrets")
BUNDLE = "keyplane-identity"
PLURALS = {"IdentityProvider": "identityproviders", "ScimConnection": "scimconnections", "SSODomain": "ssodomains"}
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

kmock_fastpath.install()
kmock_fastpath.install_emulator_cache()


# Set by `python -m bench --kubeconfig FILE`: {"kubeconfig": FILE, "run": "<id>"} (see bench/external.py).
EXTERNAL: dict[str, str] = {}


def place(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects in this run's namespaces: as they are on the emulator, renamed per run on a real cluster."""
    if not EXTERNAL:
        return list(docs)
    from .external import rename_namespaces

    return rename_namespaces(docs, f"kpbench-{EXTERNAL['run']}-{EXTERNAL.get('section', '0')}")


def placed_namespace(namespace: str) -> str:
    """A section's own namespace in this run: as named on the emulator, renamed per run on a real cluster."""
    return str(place([{"metadata": {"namespace": namespace}}])[0]["metadata"]["namespace"])


def new_section() -> None:
    """Each operator run gets fresh namespaces on a real cluster (the previous run's objects stay)."""
    if EXTERNAL:
        EXTERNAL["section"] = str(int(EXTERNAL.get("section", "0")) + 1)


def scope(variable: str, namespaces: Iterable[str]) -> dict[str, str]:
    """On a real cluster an operator watches only its run's namespaces (earlier sections' objects stay)."""
    return {variable: ",".join(sorted(namespaces))} if EXTERNAL else {}


@contextlib.asynccontextmanager
async def cluster_with_namespaces(namespaces: Iterable[str]) -> AsyncIterator[EmulatedCluster]:
    """The emulator (or, with --kubeconfig, the real cluster behind a recording proxy) with the namespaces."""
    if EXTERNAL:
        from .external import external_cluster

        async with external_cluster(EXTERNAL["kubeconfig"], namespaces, EXTERNAL["run"]) as external:
            yield external  # type: ignore[misc]  # duck-typed: the subset of EmulatedCluster the sections use
        return
    async with emulated_cluster(all_crds()) as cluster:
        for ns in namespaces:
            await cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        yield cluster


class OperatorProcess:
    """`python -m <module> run` against the emulated cluster; its peak RSS from /proc (VmHWM)."""

    def __init__(self, cluster: EmulatedCluster, module: str, env: Mapping[str, str], *, name: str) -> None:
        self.cluster = cluster
        self.log_path = Path(tempfile.gettempdir()) / f"keyplane-bench-{name}-{os.getpid()}.log"
        args = [sys.executable, "-m", module] + (["run"] if module == "keyplane" else [])
        self.traced = False  # under bench/tracemem.py: `converged()` has it write a snapshot
        if os.environ.get("BENCH_PROFILE_DIR"):  # cProfile the operator too (see README.md)
            out = Path(os.environ["BENCH_PROFILE_DIR"]) / f"{name}.pstats"
            args = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", module, *args[3:]]
        elif os.environ.get("BENCH_TRACEMALLOC_DIR"):  # where the memory lives (bench/tracemem.py)
            out = Path(os.environ["BENCH_TRACEMALLOC_DIR"]) / f"{name}.tracemalloc"
            self.traced = True
            args = [sys.executable, "-m", "bench.tracemem", str(out), module, *args[3:]]
        full_env = {**os.environ, "KUBECONFIG": cluster.kubeconfig_path, "KEYPLANE_LIVENESS_ENDPOINT": "",
                    "PYTHONUNBUFFERED": "1", **env}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)
        self.peak_rss_mb: float | None = None

    async def wait_watching(self, plurals: Iterable[str], timeout: float = 60.0, since: int = 0) -> float:
        """Wait until the operator watches every resource (in requests after the `since`-th); returns the
        seconds it took."""
        if os.environ.get("BENCH_TRACEMALLOC_DIR"):
            timeout *= 5  # imports under tracemalloc are slow
        started = time.monotonic()
        wanted = set(plurals)
        seen: set[str] = set()
        checked = since
        while True:
            requests = list(self.cluster.emulator)
            for request in requests[checked:]:
                if request.action == kmock.action.WATCH and request.resource is not None:
                    seen.add(str(request.resource.plural))
            checked = len(requests)
            if wanted <= seen:
                await asyncio.sleep(0.3)  # the initial listings are in flight
                return time.monotonic() - started
            if self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited ({self.proc.returncode}); see {self.log_path}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the operator did not start watching {wanted - seen}; see {self.log_path}")
            await asyncio.sleep(0.1)

    def converged(self) -> None:
        """Called once the burst has converged: a traced operator writes its snapshot (OUT.SIGUSR1) now."""
        if self.traced and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)

    def read_peak_rss_mb(self) -> float | None:
        self.peak_rss_mb = self._status_mb("VmHWM") or self.peak_rss_mb  # the last value once it has exited
        return self.peak_rss_mb

    def read_rss_mb(self) -> float | None:
        """Resident memory now (VmRSS): read once the operator watches, before any object, it is what the
        process costs before it handles anything (its imports and Kopf's start-up)."""
        return self._status_mb("VmRSS")

    def _status_mb(self, field: str) -> float | None:
        """A memory line of /proc/<pid>/status in MB; None once the process is gone."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
        return None

    def cpu_seconds(self) -> float | None:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return None

    async def stop(self) -> None:
        self.read_peak_rss_mb()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            for _ in range(100):
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def as_applied(doc: dict[str, Any]) -> dict[str, Any]:
    """The object as `kubectl apply` (and Argo CD, client-side) creates it: with a copy of the manifest in the
    last-applied-configuration annotation, which every watch event and every body then carries."""
    meta = dict(doc["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}),
                           LAST_APPLIED: json.dumps(doc, separators=(",", ":"), sort_keys=True)}
    return {**doc, "metadata": meta}


async def create_all(cluster: EmulatedCluster, docs: list[dict[str, Any]], concurrency: int = 16) -> float:
    """Create the objects (as kubectl apply / Argo CD would, several at a time); returns seconds taken."""
    started = time.monotonic()
    queue = [as_applied(doc) for doc in reversed(docs)]

    async def worker() -> None:
        while queue:
            await cluster.create(queue.pop())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started


def _ready(body: Mapping[str, Any]) -> bool:
    conds = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


class Progress:
    """Incremental convergence check: reads the emulator's event logs from where it left off."""

    def __init__(self, cluster: EmulatedCluster, docs: list[dict[str, Any]], *, floor: bool = False) -> None:
        self.emu = cluster.emulator
        self.floor = floor
        self.pending: set[tuple[str, str, str]] = set()
        self.expected: dict[str, dict[str, set[str]]] = {}
        self.resources = {kmock.resource("keyplane.dev", "v1alpha1", plural) for plural in PLURALS.values()}
        for doc in docs:
            ns, name = doc["metadata"]["namespace"], doc["metadata"]["name"]
            self.pending.add((doc["kind"], ns, name))
            self.expected.setdefault(ns, {}).setdefault(doc["kind"], set()).add(name)
        self.bundles_pending = set(self.expected)
        self._cursor: dict[Any, int] = {}

    def _new_events(self, res: Any) -> list[tuple[int, str, dict[str, Any], Any]]:
        log = self.emu._logs.get(res)
        if log is None:
            return []
        cursor = self._cursor.get(res, 0)
        events = log.events[bisect.bisect_right(log.events, cursor, key=lambda e: e[0]):]
        if events:
            self._cursor[res] = events[-1][0]
        return events

    def _bundle_complete(self, ns: str, body: Mapping[str, Any]) -> bool:
        if self.floor:
            return (body["metadata"].get("annotations") or {}).get("bench.keyplane.dev/complete") == "true"
        bundle = json.loads(base64.b64decode(body["data"]["identity.json"]))
        want = self.expected[ns]
        domains = {d["identityProvider"] for d in bundle.get("domains", {}).values()}
        return (want.get("IdentityProvider", set()) <= set(bundle.get("identityProviders", {}))
                and want.get("ScimConnection", set()) <= set(bundle.get("scim", {}))
                and len(domains) >= len(want.get("SSODomain", set())))

    def done(self) -> bool:
        for res in self.resources:
            latest: dict[tuple[str, str, str], Mapping[str, Any]] = {}
            for _rv, etype, body, _old in self._new_events(res):
                key = (body["kind"], body["metadata"]["namespace"], body["metadata"]["name"])
                latest[key] = body if etype != "DELETED" else {}
            for key, body in latest.items():
                if key in self.pending and _ready(body):
                    self.pending.discard(key)
        latest_bundles: dict[str, Mapping[str, Any]] = {}
        for _rv, etype, body, _old in self._new_events(SECRETS):
            if body["metadata"]["name"] == BUNDLE and etype != "DELETED":
                latest_bundles[body["metadata"]["namespace"]] = body
        for ns, body in latest_bundles.items():
            if ns in self.bundles_pending and self._bundle_complete(ns, body):
                self.bundles_pending.discard(ns)
        return not self.pending and not self.bundles_pending

    async def wait(self, timeout: float, interval: float = 0.2) -> float:
        started = time.monotonic()
        while not self.done():
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"not converged after {timeout}s: {len(self.pending)} objects not Ready, "
                                   f"{len(self.bundles_pending)} bundles incomplete")
            await asyncio.sleep(interval)
        return time.monotonic() - started


def classify_writes(requests: Iterable[kmock.Request]) -> Counter[str]:
    """Modifying requests by what they are for: the object kind they serve, or the namespace bundle."""
    by_plural = {v: k for k, v in PLURALS.items()}
    counts: Counter[str] = Counter()
    for request in requests:
        if request.method.value not in _WRITES or _from_bench(request):
            continue
        res = request.resource
        plural = str(res.plural) if res is not None else ""
        data = request.data if isinstance(request.data, Mapping) else {}
        meta = data.get("metadata") or {}
        if plural in by_plural:
            counts[by_plural[plural]] += 1
        elif plural == "secrets":
            name = request.name or meta.get("name") or ""
            if name == BUNDLE:
                counts["bundle"] += 1
            elif name.endswith("-scim-token"):
                counts["ScimConnection"] += 1
            else:
                counts["IdentityProvider"] += 1
        elif plural == "events":
            counts[(data.get("involvedObject") or {}).get("kind") or "other"] += 1
        else:
            counts[f"other:{plural}"] += 1
    return counts


def _from_bench(request: kmock.Request) -> bool:
    """The benchmark's own requests (creating the objects) use httpx's default User-Agent."""
    agent = request.headers.get("User-Agent") or request.headers.get("user-agent") or ""
    return agent.startswith("python-httpx")


def requests_since(cluster: EmulatedCluster, index: int) -> list[kmock.Request]:
    return list(cluster.emulator)[index:]


def request_count(cluster: EmulatedCluster) -> int:
    return len(list(cluster.emulator))

"""`python -m bench --kubeconfig FILE`: the same sections against a real API server instead of the emulator.

What the emulator gives the sections for free is rebuilt here:
* the request log: the operator under test talks to a recording proxy on 127.0.0.1 (plain HTTP, no
  credentials) that forwards every request, watch streams included, to the API server with the
  kubeconfig's credentials (loaded as `keyplane run` loads them), and records method, path and body,
  as the emulator's log does;
* the object events `Progress` reads: the bench watches the three kinds and Secrets cluster-wide itself.
Objects go to freshly named namespaces (`kpbench-<run>-<section>-...`), which are left for the user to delete
(`kubectl delete ns -l keyplane.dev/bench-run=<run>`), as the e2e suite does. Each operator is limited to
its own namespaces (KEYPLANE_NAMESPACES / FLOOR_NAMESPACES), so leftovers of earlier sections are not
re-handled. The CRDs must be installed (`kubectl apply -f crds/`). See README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import aiohttp.web
import httpx
import kmock
import yaml

from keyplane.sources.httpx_auth import ClusterAuth
from keyplane.sources.kube import resource_path
from keyplane.sources.kubeconfig import load_kubeconfig

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
KINDS = {"identityproviders": ("keyplane.dev", "v1alpha1"), "scimconnections": ("keyplane.dev", "v1alpha1"),
         "ssodomains": ("keyplane.dev", "v1alpha1"), "secrets": ("", "v1")}
PLURAL_KINDS = {"identityproviders": "IdentityProvider", "scimconnections": "ScimConnection",
                "ssodomains": "SSODomain", "secrets": "Secret"}


@dataclass(frozen=True)
class Method:
    value: str


@dataclass(frozen=True)
class Url:
    path: str


@dataclass(frozen=True)
class Resource:
    plural: str


@dataclass
class RecordedRequest:
    """One request the operator made, with the attributes of kmock's requests that the sections read."""

    method: Method
    url: Url
    headers: Mapping[str, str]
    data: Any
    resource: Resource | None
    name: str | None
    action: Any
    seconds: float | None = None  # until the API server's response headers (what `api_latency` reads)


def parse_path(path: str) -> tuple[Resource | None, str | None]:
    """The resource plural and object name of an API path (/api/v1/namespaces/ns/secrets/x/status...)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"]:
        rest = parts[3:]
    else:
        return None, None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    if not rest:
        return None, None
    return Resource(rest[0]), (rest[1] if len(rest) > 1 else None)


def record(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> RecordedRequest:
    resource, name = parse_path(path)
    data: Any = None
    if body:
        with contextlib.suppress(ValueError):
            data = json.loads(body)
    watching = parse_qs(query).get("watch", [""])[0] in {"true", "1"}
    action = kmock.action.WATCH if watching else None
    return RecordedRequest(Method(method), Url(path), dict(headers), data, resource, name, action)


@dataclass
class EventLog:
    """The shape of kmock's per-resource event log that `Progress` reads: (seq, type, body, old)."""

    events: list[tuple[int, str, dict[str, Any], Any]] = field(default_factory=list)


class Upstream:
    """The API server of a kubeconfig with its credentials, loaded as `keyplane run` loads them."""

    def __init__(self, kubeconfig: str) -> None:
        credentials = load_kubeconfig([kubeconfig])
        # No connection limit: every watch the operators open holds a connection for its whole life, and
        # one the operator dropped stays open until its next event (httpx's default 100 filled up with the
        # restart section's second operator, and requests waited for a free one until they failed).
        self.http = httpx.AsyncClient(base_url=credentials.server, verify=credentials.ssl_context(),
                                      auth=ClusterAuth(credentials), trust_env=False,
                                      limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
                                      timeout=httpx.Timeout(30.0, read=None))

    async def request(self, method: str, path: str, *, json: Any = None) -> dict[str, Any]:
        response = await self.http.request(method, path, json=json)
        response.raise_for_status()
        body = response.json()
        return body if isinstance(body, dict) else {}

    async def stream_lines(self, path: str, params: Mapping[str, str]) -> AsyncIterator[str]:
        async with self.http.stream("GET", path, params=params) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.strip():
                    yield line

    async def aclose(self) -> None:
        await self.http.aclose()


class RecordingProxy:
    """127.0.0.1 → the API server, every request recorded; streams (watches) relayed chunk by chunk."""

    def __init__(self, api: Upstream) -> None:
        self.api = api
        self.requests: list[RecordedRequest] = []
        self.url = ""
        self._runner: aiohttp.web.AppRunner | None = None

    async def _relay(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body = await request.read()
        recorded = record(request.method, request.path, request.query_string, request.headers, body)
        self.requests.append(recorded)
        headers = httpx.Headers({k: v for k, v in request.headers.items()
                                 if k.lower() in {"content-type", "accept", "user-agent", "accept-encoding"}})
        # The bytes are relayed as they come: ask for what the operator asked for (a real API server gzips
        # large responses), and pass the encoding on with them.
        headers.setdefault("Accept-Encoding", "identity")
        client = self.api.http
        upstream = client.build_request(request.method, request.path_qs, content=body, headers=headers)
        started = time.monotonic()
        response = await client.send(upstream, stream=True)
        recorded.seconds = time.monotonic() - started
        try:
            out = aiohttp.web.StreamResponse(status=response.status_code)
            out.content_type = response.headers.get("content-type", "application/json").split(";")[0]
            if "content-encoding" in response.headers:
                out.headers["Content-Encoding"] = response.headers["content-encoding"]
            # A watch ends when either side goes away (the operator stopped, the bench finished), at times
            # before its headers went out (seen against a real API server).
            with contextlib.suppress(httpx.HTTPError, ConnectionResetError):
                await out.prepare(request)
                async for chunk in response.aiter_raw():
                    await out.write(chunk)
                await out.write_eof()
            return out
        finally:
            await response.aclose()

    async def start(self) -> None:
        app = aiohttp.web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        self._runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class RequestView(list[RecordedRequest]):
    """`cluster.emulator` for the sections: iterating gives the requests; `_logs` the watched events."""

    def __init__(self, proxy: RecordingProxy, logs: dict[Any, EventLog]) -> None:
        super().__init__()
        self._proxy = proxy
        self._logs = logs

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(list(self._proxy.requests))


class ExternalCluster:
    """The subset of EmulatedCluster the convergence, floor, idle and restart sections use."""

    def __init__(self, kubeconfig: str, run: str, namespaces: Iterable[str]) -> None:
        self.source_kubeconfig = kubeconfig
        self.run = run
        self.namespaces = sorted(namespaces)
        self.api = Upstream(kubeconfig)
        self.proxy = RecordingProxy(self.api)
        self.logs: dict[Any, EventLog] = {kmock.resource(group, version, plural): EventLog()
                                          for plural, (group, version) in KINDS.items()}
        self.emulator = RequestView(self.proxy, self.logs)
        self._seq = 0
        self._watchers: list[asyncio.Task[None]] = []
        self._tmp = tempfile.mkdtemp(prefix="keyplane-bench-external-")
        self.kubeconfig_path = os.path.join(self._tmp, "kubeconfig")
        self._mark = 0

    async def start(self) -> None:
        await self.proxy.start()
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "bench-proxy",
            "clusters": [{"name": "bench-proxy", "cluster": {"server": self.proxy.url}}],
            "users": [{"name": "bench-proxy", "user": {}}],
            "contexts": [{"name": "bench-proxy", "context": {"cluster": "bench-proxy", "user": "bench-proxy"}}],
        }
        with open(self.kubeconfig_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f)
        # Only this section's namespaces: earlier runs' objects stay in the cluster, and listing and watching
        # them all made the bench's own view of the burst tens of seconds late (probes "Ready" after 30-40 s
        # whose status said Ready 5 s after their creation).
        for resource in self.logs:
            for namespace in self.namespaces:
                self._watchers.append(asyncio.create_task(self._watch(resource, namespace)))

    async def stop(self) -> None:
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await self.proxy.stop()
        await self.api.aclose()

    async def _watch(self, resource: Any, namespace: str) -> None:
        """Append every event of the resource in the namespace to its log (re-listing after a break)."""
        api_version = f"{resource.group}/{resource.version}" if resource.group else resource.version
        path = resource_path(api_version, resource.plural, namespace)
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                listing = await self.api.request("GET", path)
                for item in listing.get("items") or []:
                    self._append(resource, "ADDED", item)
                version = (listing.get("metadata") or {}).get("resourceVersion", "")
                params = {"watch": "true", "resourceVersion": version, "allowWatchBookmarks": "false"}
                async for line in self.api.stream_lines(path, params):
                    event = json.loads(line)
                    if event.get("type") in {"ADDED", "MODIFIED", "DELETED"}:
                        self._append(resource, event["type"], event["object"])
            await asyncio.sleep(1.0)

    def _append(self, resource: Any, etype: str, body: dict[str, Any]) -> None:
        self._seq += 1
        body.setdefault("kind", PLURAL_KINDS[resource.plural])
        self.logs[resource].events.append((self._seq, etype, body, None))

    # -- EmulatedCluster's accounting and helpers -------------------------------------------------------

    def mark(self) -> None:
        self._mark = len(self.proxy.requests)

    def requests_since_mark(self) -> list[RecordedRequest]:
        return self.proxy.requests[self._mark:]

    def writes_since_mark(self, *, ignore_events: bool = False) -> list[str]:
        return [f"{r.method.value} {r.url.path}" for r in self.requests_since_mark()
                if r.method.value in WRITE_METHODS
                and not (ignore_events and r.resource is not None and r.resource.plural == "events")]

    def modifying_requests(self, *, ignore_events: bool = False) -> int:
        return len(self.writes_since_mark(ignore_events=ignore_events))

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        group_version = str(obj["apiVersion"])
        if obj["kind"] == "Namespace":
            return await self.api.request("POST", "/api/v1/namespaces", json=dict(obj))
        plural = {kind: plural for plural, kind in PLURAL_KINDS.items()}[str(obj["kind"])]
        path = resource_path(group_version, plural, meta.get("namespace") or "default")
        return await self.api.request("POST", path, json=dict(obj))


def run_id() -> str:
    return secrets.token_hex(3)


def rename_namespaces(docs: Iterable[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The workload's `bench-NN` namespaces (and the probe/URL ones) as `<prefix>-...`, unique per run."""
    out = []
    for doc in docs:
        doc = json.loads(json.dumps(doc))
        doc["metadata"]["namespace"] = f"{prefix}-{doc['metadata']['namespace']}"
        out.append(doc)
    return out


@contextlib.asynccontextmanager
async def external_cluster(kubeconfig: str, namespaces: Iterable[str], run: str) -> AsyncIterator[ExternalCluster]:
    namespaces = list(namespaces)
    cluster = ExternalCluster(kubeconfig, run, namespaces)
    await cluster.start()
    try:
        for ns in namespaces:
            await cluster.create({"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": ns, "labels": {"keyplane.dev/bench-run": run}}})
        yield cluster
    finally:
        await cluster.stop()

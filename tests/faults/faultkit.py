"""Helpers of the fault suite: a misbehaving metadata server, bundle readers, log capture and scans.

Imported by the tests in this directory as ``faultkit`` (pytest puts this directory on sys.path; the
directory has no __init__.py, so the module name is unique across the suite).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import yaml

GV = "keyplane.dev/v1alpha1"
QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def okta_metadata(entity_id: str = "http://www.okta.com/exkDEMO1234567890", sso: str | None = None) -> str:
    """The quickstart's Okta metadata document (a real signing certificate), optionally re-labelled."""
    doc = yaml.safe_load((QUICKSTART / "10-identityprovider-okta.yaml").read_text())
    xml = str(doc["spec"]["saml"]["metadata"]["inline"])
    xml = xml.replace("http://www.okta.com/exkDEMO1234567890", entity_id)
    if sso:
        xml = xml.replace("https://acme.okta.example/app/acme_keyplane_1/exkDEMO1234567890/sso/saml", sso)
    return xml


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def saml_url_idp(name: str, ns: str, url: str, *, refresh: str = "1s", sign: bool = False) -> dict[str, Any]:
    return {"apiVersion": GV, "kind": "IdentityProvider", "metadata": {"name": name, "namespace": ns},
            "spec": {"protocol": "SAML",
                     "saml": {"metadata": {"url": url, "refreshInterval": refresh}, "signAuthnRequests": sign}}}


def inline_idp(name: str, ns: str, *, sign: bool = False, xml: str | None = None) -> dict[str, Any]:
    return {"apiVersion": GV, "kind": "IdentityProvider", "metadata": {"name": name, "namespace": ns},
            "spec": {"protocol": "SAML",
                     "saml": {"metadata": {"inline": xml or okta_metadata()}, "signAuthnRequests": sign}}}


def scim(name: str, ns: str, *, idp: str | None = None, rotation: str = "2160h", overlap: str = "24h",
         ) -> dict[str, Any]:
    spec: dict[str, Any] = {"token": {"rotationInterval": rotation, "overlap": overlap},
                            "groupBindings": [{"group": "admins", "role": "Admin"}]}
    if idp:
        spec["identityProviderRef"] = {"name": idp}
    return {"apiVersion": GV, "kind": "ScimConnection", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (((obj or {}).get("status") or {}).get("conditions") or [])}


def is_ready(obj: dict[str, Any] | None) -> bool:
    return conditions(obj).get("Ready", {}).get("status") == "True"


async def bundle(cluster: Any, ns: str) -> dict[str, Any] | None:
    secret = await cluster.get("v1", "Secret", ns, "keyplane-identity")
    if secret is None:
        return None
    return json.loads(base64.b64decode(secret["data"]["identity.json"]))


async def idp_entry(cluster: Any, ns: str, name: str) -> dict[str, Any] | None:
    return ((await bundle(cluster, ns)) or {}).get("identityProviders", {}).get(name)


def secret_value(secret: dict[str, Any] | None, key: str = "token") -> str | None:
    if not secret or key not in (secret.get("data") or {}):
        return None
    return base64.b64decode(secret["data"][key]).decode()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- a metadata server that misbehaves on demand ----------------------------------------------------------

class MetadataServer:
    """A raw asyncio HTTP/1.1 server on 127.0.0.1: each path has a behaviour that a test flips at will.

    Behaviours: ok (200 + ETag, 304 on a match), 500, timeout (accept, never answer), reset (close the
    connection mid-headers), trickle (one byte every 0.2 s, forever), huge (a 50 MiB chunked body, no
    Content-Length), huge-declared (Content-Length: 50 MiB), garbage (200 with random bytes), loop
    (redirect to itself), pingpong (a→b→a), redirect:<url> (302 to that URL).
    """

    def __init__(self, document: str | None = None) -> None:
        self.document = (document or okta_metadata()).encode()
        self.behaviour: dict[str, str] = {}
        self.static: dict[str, bytes] = {}  # path -> a document served as is (200)
        self.hits: dict[str, int] = {}
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def __aenter__(self) -> MetadataServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                self.hits[path] = self.hits.get(path, 0) + 1
                if not await self._respond(path, headers, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _respond(self, path: str, headers: dict[str, str], w: asyncio.StreamWriter) -> bool:
        mode = self.behaviour.get(path, "ok")
        etag = '"' + hashlib.sha256(self.document).hexdigest()[:16] + '"'

        def send(status: str, extra: dict[str, str], body: bytes = b"") -> None:
            hdrs = {"Content-Length": str(len(body)), **extra}
            w.write(f"HTTP/1.1 {status}\r\n".encode() + b"".join(f"{k}: {v}\r\n".encode() for k, v in hdrs.items())
                    + b"\r\n" + body)

        if path in self.static and mode == "ok":
            send("200 OK", {"Content-Type": "application/json"}, self.static[path])
            await w.drain()
            return True
        if mode == "slow-ok":
            await asyncio.sleep(2.0)
            mode = "ok"
        if mode == "ok":
            if headers.get("if-none-match") == etag:
                send("304 Not Modified", {"ETag": etag})
            else:
                send("200 OK", {"ETag": etag, "Content-Type": "application/xml"}, self.document)
        elif mode == "500":
            send("500 Internal Server Error", {}, b"<html>oops</html>")
        elif mode == "timeout":
            await asyncio.sleep(3600)
        elif mode == "reset":
            w.write(b"HTTP/1.1 200 OK\r\nContent-Le")
            await w.drain()
            w.transport.abort()
            return False
        elif mode == "trickle":
            w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 100000\r\n\r\n")
            while True:
                w.write(b"<")
                await w.drain()
                await asyncio.sleep(0.2)
        elif mode in ("huge", "huge-declared"):
            size = 50 << 20
            if mode == "huge":
                w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nTransfer-Encoding: chunked\r\n\r\n")
            else:
                w.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {size}\r\n\r\n".encode())
            chunk = b"<x>" + b"A" * (64 * 1024 - 7) + b"</x>"
            sent = 0
            while sent < size:
                w.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if mode == "huge" else chunk)
                await w.drain()
                sent += len(chunk)
            if mode == "huge":
                w.write(b"0\r\n\r\n")
        elif mode == "garbage":
            send("200 OK", {"Content-Type": "application/xml"}, os.urandom(4096))
        elif mode == "loop":
            send("302 Found", {"Location": path})
        elif mode == "pingpong":
            target = path + "-pong" if not path.endswith("-pong") else path[: -len("-pong")]
            self.behaviour.setdefault(target, "pingpong")
            send("302 Found", {"Location": target})
        elif mode.startswith("redirect:"):
            send("302 Found", {"Location": mode.split(":", 1)[1]})
        else:  # pragma: no cover
            raise AssertionError(mode)
        await w.drain()
        return True


# --- logs ---------------------------------------------------------------------------------------------------

class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return self.render(self.records)

    @staticmethod
    def render(records: list[logging.LogRecord]) -> str:
        out = []
        for record in records:
            try:
                out.append(f"{record.levelname} {record.name}: {record.getMessage()}")
            except Exception:
                out.append(f"{record.levelname} {record.name}: {record.msg!r} {record.args!r}")
            if record.exc_info:
                out.append("Traceback " + logging.Formatter().formatException(record.exc_info))
        return "\n".join(out)


@contextlib.contextmanager
def captured_logs() -> Iterator[Capture]:
    """Every log record of the operator (and Kopf) at DEBUG, whatever pytest's own capture does."""
    capture = Capture()
    root = logging.getLogger()
    old = root.level
    quiet = {name: logging.getLogger(name).level for name in ("httpcore", "httpx", "aiohttp", "asyncio", "hpack")}
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    for name in quiet:  # transport chatter: no secrets there (no bodies are logged), only noise
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(old)
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)


# "failed temporarily" is a deliberate kopf.TemporaryError (retry after a delay), not a crash.
def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        return str(record.msg)


HANDLER_FAILED = re.compile(r"Handler .* failed(?! temporarily)|Traceback|Unhandled exception|Error in handler",
                            re.IGNORECASE)


def assert_no_crash(logs: Capture | str, *, allow: tuple[str, ...] = ()) -> None:
    """No exception escaped a handler: no traceback and no "Handler ... failed" line in the logs.

    ``allow``: substrings of log messages whose tracebacks are expected (e.g. Kopf's own "Throttling for"
    when the test refuses Kopf's bookkeeping patches on purpose)."""
    if isinstance(logs, Capture):
        kept = [r for r in logs.records if not any(a in _message(r) for a in allow)]
        text = Capture.render(kept)
    else:
        text = logs
    lines = text.splitlines()
    bad = [i for i, line in enumerate(lines) if HANDLER_FAILED.search(line)]
    shown = ["\n".join(lines[max(0, i - 1):i + 25]) for i in bad[:3]]
    assert not bad, f"handlers crashed ({len(bad)}):\n" + "\n---\n".join(shown)


async def all_statuses_and_events(cluster: Any, namespaces: list[str]) -> str:
    """Every status of every Keyplane object and every Event in the namespaces, as one text blob."""
    parts: list[str] = []
    for ns in namespaces:
        for kind in ("IdentityProvider", "SSODomain", "ScimConnection"):
            for obj in await cluster.list(GV, kind, ns):
                parts.append(json.dumps(obj.get("status") or {}))
        for event in await cluster.list("v1", "Event", ns):
            parts.append(json.dumps(event))
    return "\n".join(parts)


@contextlib.asynccontextmanager
async def noop() -> AsyncIterator[None]:
    yield


# --- cutting the operator off the API server after its k-th write ---------------------------------------------

class WriteGate:
    """Lets the operator's first `allow` modifying requests in `namespace` through, then refuses every
    further operator write (403, state untouched) — the operator is "dead" from the API server's point of
    view right after that write. The test's own requests (httpx's User-Agent) always pass.

    Installed for the duration of a ``with`` block (``keyplane.testing.emulator.requests_intercepted``).
    """

    WRITES = ("POST", "PUT", "PATCH", "DELETE")

    def __init__(self, namespace: str, allow: int | None = None) -> None:
        self.namespace = namespace
        self.allow = allow
        self.passed: list[str] = []
        self.refused: list[str] = []
        self.open = True

    def _is_operator_write(self, request: Any) -> bool:
        agent = request.headers.get("User-Agent") or ""
        return (request.method.value in self.WRITES and not agent.startswith("python-httpx")
                and f"/namespaces/{self.namespace}/" in request.url.path
                and not request.url.path.endswith("/events"))

    @contextlib.contextmanager
    def installed(self) -> Iterator[WriteGate]:
        import aiohttp.web

        from keyplane.testing.emulator import requests_intercepted

        gate = self

        async def intercept(emu: Any, request: Any, forward: Any) -> Any:
            if gate._is_operator_write(request):
                what = f"{request.method.value} {request.url.path}"
                if not gate.open or (gate.allow is not None and len(gate.passed) >= gate.allow):
                    gate.refused.append(what)
                    # 403, not 503: Kopf would retry a 5xx with sleeps that outlast the 1-s stop of the test
                    # operator, which then gets cancelled with its HTTP sessions open.
                    return aiohttp.web.json_response(
                        {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 403,
                         "reason": "Forbidden", "message": "the operator was killed here"}, status=403)
                gate.passed.append(what)
            return await forward(request)

        with requests_intercepted(intercept):
            yield self


class ApiFaults:
    """Rules applied before the emulator touches its state: a refused write is really not written.

    ``add(predicate, status=409, times=3)`` answers the first `times` matching requests with `status`;
    ``delay=`` slows every matching request; ``watch_drop`` ends matching watch streams at once (the client
    sees a clean end of stream); ``watch_gone`` sends a 410 Gone ERROR event on a watch that resumes from a
    resourceVersion. Only the operator's requests are affected (not the test's httpx client).
    """

    def __init__(self) -> None:
        self.rules: list[dict[str, Any]] = []
        self.hits: dict[str, int] = {}

    def add(self, name: str, predicate: Any, *, status: int | None = None, times: int = 1,
            delay: float = 0.0, watch_drop: bool = False, watch_gone: bool = False) -> None:
        self.rules.append({"name": name, "predicate": predicate, "status": status, "times": times,
                           "delay": delay, "watch_drop": watch_drop, "watch_gone": watch_gone})
        self.hits[name] = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator[ApiFaults]:
        import aiohttp.web

        from keyplane.testing.emulator import requests_intercepted

        faults = self

        async def intercept(emu: Any, request: Any, forward: Any) -> Any:
            agent = request.headers.get("User-Agent") or ""
            if not agent.startswith("python-httpx"):
                for rule in faults.rules:
                    if faults.hits[rule["name"]] >= rule["times"] or not rule["predicate"](request):
                        continue
                    faults.hits[rule["name"]] += 1
                    if rule["delay"]:
                        await asyncio.sleep(rule["delay"])
                    if rule["status"] is not None:
                        return aiohttp.web.json_response(
                            {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": rule["status"],
                             "reason": {409: "Conflict", 500: "InternalError"}.get(rule["status"], "Error"),
                             "message": f"injected by the fault suite ({rule['name']})"}, status=rule["status"])
                    if rule["watch_drop"]:
                        return aiohttp.web.Response(status=200, content_type="application/json", body=b"")
                    if rule["watch_gone"]:
                        line = json.dumps({"type": "ERROR", "object": {
                            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                            "code": 410, "reason": "Expired", "message": "too old resource version"}})
                        return aiohttp.web.Response(status=200, content_type="application/json",
                                                    body=(line + "\n").encode())
            return await forward(request)

        with requests_intercepted(intercept):
            yield self


def is_write(request: Any, *, plural: str | None = None, status: bool | None = None,
             methods: tuple[str, ...] = ("POST", "PUT", "PATCH", "DELETE")) -> bool:
    if request.method.value not in methods or request.resource is None:
        return False
    if plural is not None and str(request.resource.plural) != plural:
        return False
    return status is None or (request.subresource == "status") == status


def is_watch(request: Any, *, plural: str | None = None, resumed: bool | None = None) -> bool:
    if request.method.value != "GET" or (request.params.get("watch") or "").lower() not in ("true", "1"):
        return False
    if plural is not None and (request.resource is None or str(request.resource.plural) != plural):
        return False
    rv = request.params.get("resourceVersion") or ""
    return resumed is None or (rv not in ("", "0")) == resumed

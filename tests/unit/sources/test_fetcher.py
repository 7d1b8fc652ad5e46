"""MetadataFetcher and SharedMetadataCache against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from keyplane import __version__
from keyplane.sources.clock import FrozenClock
from keyplane.sources.errors import FetchError
from keyplane.sources.fetcher import (
    FetchPolicy,
    MetadataFetcher,
    SharedMetadataCache,
    forbidden_address_class,
)

LOCAL = FetchPolicy(allow_http=True, allow_private_networks=True, connect_timeout=2.0, total_timeout=5.0)
PUBLIC_IP = "93.184.215.14"  # a global address; tests NAT it to 127.0.0.1, nothing leaves the host
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
METADATA = b'<md:EntityDescriptor entityID="http://www.okta.com/exk1"/>'


# --------------------------------------------------------------------------- local HTTP server


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


def response_head(status: int, headers: dict[str, str] | None = None, *, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def respond(
    writer: asyncio.StreamWriter, status: int, body: bytes = b"", headers: dict[str, str] | None = None
) -> None:
    writer.write(response_head(status, headers, length=len(body)) + body)
    await writer.drain()


@dataclass
class LocalServer:
    """One request per connection; every connection handler is cancelled on stop()."""

    handler: Handler
    ssl_context: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_conn, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, path: str = "/", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {}
            for line in header_lines:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            request = Request(method, path, headers)
            self.requests.append(request)
            await self.handler(request, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[LocalServer]]]:
    servers: list[LocalServer] = []

    async def start(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> LocalServer:
        server = LocalServer(handler, ssl_context)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def make_fetcher() -> AsyncIterator[Callable[..., MetadataFetcher]]:
    fetchers: list[MetadataFetcher] = []

    def make(policy: FetchPolicy = LOCAL, **kwargs: Any) -> MetadataFetcher:
        fetcher = MetadataFetcher(policy, **kwargs)
        fetchers.append(fetcher)
        return fetcher

    yield make
    for fetcher in fetchers:
        await fetcher.aclose()


def fake_resolver(table: dict[str, list[str]], calls: list[str] | None = None) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


class NATBackend(httpcore.AsyncNetworkBackend):
    """Connects to 127.0.0.1 when asked for PUBLIC_IP (a test-only NAT); records what was asked."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.hosts: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.hosts.append(host)
        target = "127.0.0.1" if host == PUBLIC_IP else host
        return await self.inner.connect_tcp(target, port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class NoConnectBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self, host: str, port: int, *args: Any, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:
        raise AssertionError(f"connected to {host} although the address check should have refused it")


# --------------------------------------------------------------------------- basic fetches and validators


async def test_200_then_304_with_etag(serve: Any, make_fetcher: Any) -> None:
    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        if req.headers.get("if-none-match") == '"v1"':
            await respond(w, 304, headers={"ETag": '"v1"'})
        else:
            await respond(w, 200, METADATA, {"ETag": '"v1"', "Content-Type": "application/xml"})

    server = await serve(handler)
    fetcher = make_fetcher(clock=FrozenClock(T0))
    first = await fetcher.fetch(server.url("/metadata"))
    assert first.body == METADATA
    assert first.etag == '"v1"'
    assert not first.not_modified
    assert first.fetched_at == T0
    assert first.url == server.url("/metadata")
    assert len(first.sha256) == 64
    assert server.requests[0].headers["user-agent"] == f"keyplane/{__version__}"
    assert "if-none-match" not in server.requests[0].headers

    second = await fetcher.fetch(server.url("/metadata"), etag=first.etag)
    assert second.not_modified
    assert second.etag == '"v1"'
    assert second.body == b""
    assert server.requests[1].headers["if-none-match"] == '"v1"'


async def test_last_modified_conditional_get(serve: Any, make_fetcher: Any) -> None:
    stamp = "Wed, 01 Jan 2025 00:00:00 GMT"

    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        if req.headers.get("if-modified-since") == stamp:
            await respond(w, 304)
        else:
            await respond(w, 200, METADATA, {"Last-Modified": stamp})

    server = await serve(handler)
    fetcher = make_fetcher()
    first = await fetcher.fetch(server.url())
    assert (first.last_modified, first.etag) == (stamp, None)
    second = await fetcher.fetch(server.url(), last_modified=first.last_modified)
    assert second.not_modified
    assert second.last_modified == stamp  # kept from the request: the 304 didn't repeat it


async def test_changed_body_gives_new_hash_and_etag(serve: Any, make_fetcher: Any) -> None:
    state = {"version": 1}

    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        etag = f'"v{state["version"]}"'
        if req.headers.get("if-none-match") == etag:
            await respond(w, 304, headers={"ETag": etag})
        else:
            await respond(w, 200, f"body {state['version']}".encode(), {"ETag": etag})

    server = await serve(handler)
    fetcher = make_fetcher()
    first = await fetcher.fetch(server.url())
    state["version"] = 2
    second = await fetcher.fetch(server.url(), etag=first.etag)
    assert not second.not_modified
    assert second.body == b"body 2"
    assert second.etag == '"v2"'
    assert second.sha256 != first.sha256


@pytest.mark.parametrize("status", [500, 404, 403, 204])
async def test_http_errors(serve: Any, make_fetcher: Any, status: int) -> None:
    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        await respond(w, status, b"" if status == 204 else b"stack trace with SECRET-VALUE")

    server = await serve(handler)
    with pytest.raises(FetchError) as exc:
        await make_fetcher().fetch(server.url("/metadata?token=SECRET-QUERY"))
    assert exc.value.reason == "MetadataHTTPError"
    assert str(status) in exc.value.message
    assert "SECRET" not in exc.value.message  # neither the body nor the query string


async def test_connection_refused(make_fetcher: Any) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(FetchError) as exc:
        await make_fetcher().fetch(f"http://127.0.0.1:{port}/")
    assert exc.value.reason == "MetadataUnreachable"


async def test_unresolvable_host(make_fetcher: Any) -> None:
    fetcher = make_fetcher(resolver=fake_resolver({}))
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch("https://no-such-idp.example.test/metadata")
    assert exc.value.reason == "MetadataUnreachable"
    assert "resolve" in exc.value.message


async def test_connection_reset_mid_body(serve: Any, make_fetcher: Any) -> None:
    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        w.write(response_head(200, length=10_000) + b"x" * 100)
        await w.drain()  # then close: the body is cut short

    server = await serve(handler)
    with pytest.raises(FetchError) as exc:
        await make_fetcher().fetch(server.url())
    assert exc.value.reason == "MetadataUnreachable"


# --------------------------------------------------------------------------- time and size limits


async def test_slow_trickle_hits_the_overall_deadline(serve: Any, make_fetcher: Any) -> None:
    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        w.write(response_head(200, length=10_000))
        # Every read succeeds quickly, so only an overall deadline can stop this.
        for _ in range(10_000):
            w.write(b"x")
            await w.drain()
            await asyncio.sleep(0.05)

    server = await serve(handler)
    fetcher = make_fetcher(FetchPolicy(allow_http=True, allow_private_networks=True, total_timeout=0.5))
    started = time.monotonic()
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch(server.url())
    assert exc.value.reason == "MetadataTimeout"
    assert "--metadata-timeout (Helm config.metadataTimeout" in exc.value.message
    assert time.monotonic() - started < 3.0  # 0.5 s deadline; without it the trickle would take minutes


async def test_slow_dns_is_a_timeout(make_fetcher: Any) -> None:
    async def slow(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return [PUBLIC_IP]

    fetcher = make_fetcher(FetchPolicy(connect_timeout=0.2, total_timeout=5), resolver=slow)
    started = time.monotonic()
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch("https://slow-dns.example.test/")
    assert exc.value.reason == "MetadataTimeout"
    assert "--metadata-connect-timeout (Helm config.metadataConnectTimeout" in exc.value.message
    assert time.monotonic() - started < 3.0


async def test_too_large_by_content_length_is_rejected_before_reading(serve: Any, make_fetcher: Any) -> None:
    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        w.write(response_head(200, length=50_000_000))
        await w.drain()
        await asyncio.sleep(60)  # never sends the body: reading it would time out instead

    server = await serve(handler)
    fetcher = make_fetcher(FetchPolicy(allow_http=True, allow_private_networks=True, max_bytes=1024))
    started = time.monotonic()
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch(server.url())
    assert exc.value.reason == "MetadataTooLarge"
    assert "1024" in exc.value.message
    assert "--metadata-max-bytes (Helm config.metadataMaxBytes, KEYPLANE_METADATA_MAX_BYTES)" in exc.value.message
    assert time.monotonic() - started < 3.0  # the 5 s deadline would be the only other way out


@pytest.mark.parametrize("framing", ["close-delimited", "chunked"])
async def test_too_large_without_content_length_stops_reading(
    serve: Any, make_fetcher: Any, framing: str
) -> None:
    sent = {"bytes": 0}
    finished = asyncio.Event()
    chunk = b"x" * 16384

    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        extra = {"Transfer-Encoding": "chunked"} if framing == "chunked" else {}
        w.write(response_head(200, extra))
        try:
            while True:  # an endless body: only the client hanging up ends this
                w.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if framing == "chunked" else chunk)
                await w.drain()
                sent["bytes"] += len(chunk)
        finally:
            finished.set()

    server = await serve(handler)
    fetcher = make_fetcher(FetchPolicy(allow_http=True, allow_private_networks=True, max_bytes=64 * 1024))
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch(server.url())
    assert exc.value.reason == "MetadataTooLarge"
    # The client hung up: the server's writes start failing and the handler ends.
    await asyncio.wait_for(finished.wait(), 5)
    assert sent["bytes"] < 64 * 1024 * 1024  # at most what fit in socket buffers, not "forever"


# --------------------------------------------------------------------------- redirects


async def test_redirects_are_followed_within_the_limit(serve: Any, make_fetcher: Any) -> None:
    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        if req.path.startswith("/r/"):
            n = int(req.path[3:])
            target = f"/r/{n + 1}" if n < 2 else "/final"
            await respond(w, 302 if n % 2 else 301, headers={"Location": target})
        else:
            await respond(w, 200, METADATA)

    server = await serve(handler)
    result = await make_fetcher().fetch(server.url("/r/0"))
    assert result.body == METADATA
    assert result.url == server.url("/final")
    assert server.paths() == ["/r/0", "/r/1", "/r/2", "/final"]


async def test_redirect_loop(serve: Any, make_fetcher: Any) -> None:
    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        await respond(w, 307, headers={"Location": "/b" if req.path == "/a" else "/a"})

    server = await serve(handler)
    with pytest.raises(FetchError) as exc:
        await make_fetcher().fetch(server.url("/a"))
    assert exc.value.reason == "MetadataTooManyRedirects"
    assert "loop" in exc.value.message
    assert server.paths() == ["/a", "/b"]


async def test_too_many_redirects(serve: Any, make_fetcher: Any) -> None:
    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        await respond(w, 302, headers={"Location": f"/r/{int(req.path[3:]) + 1}"})

    server = await serve(handler)
    policy = FetchPolicy(allow_http=True, allow_private_networks=True, max_redirects=3)
    with pytest.raises(FetchError) as exc:
        await make_fetcher(policy).fetch(server.url("/r/0"))
    assert exc.value.reason == "MetadataTooManyRedirects"
    assert len(server.requests) == 4  # the first request and three redirects followed


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("http://127.0.0.1:{port}/secret", "loopback"),  # literal IP
        ("http://internal.example.test:{port}/secret", "private"),  # a name resolving to 10.0.0.5
        ("http://[::ffff:127.0.0.1]:{port}/secret", "loopback"),
    ],
)
async def test_redirect_to_a_private_address_is_refused_per_hop(
    serve: Any, make_fetcher: Any, location: str, why: str
) -> None:
    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        if req.path == "/start":
            await respond(w, 302, headers={"Location": location.format(port=server.port)})
        else:
            await respond(w, 200, b"internal data")

    server = await serve(handler)
    nat = NATBackend()
    fetcher = make_fetcher(
        FetchPolicy(allow_http=True, allow_private_networks=False),
        resolver=fake_resolver({"idp.example.test": [PUBLIC_IP], "internal.example.test": ["10.0.0.5"]}),
        network_backend=nat,
    )
    # The first hop really is allowed and served under this policy...
    ok = await fetcher.fetch(f"http://idp.example.test:{server.port}/ok")
    assert ok.body == b"internal data"
    # ...and the redirect target is checked again before any connection is made to it.
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch(f"http://idp.example.test:{server.port}/start")
    assert exc.value.reason == "MetadataURLForbidden"
    assert why in exc.value.message
    assert server.paths() == ["/ok", "/start"]
    assert set(nat.hosts) == {PUBLIC_IP}


# --------------------------------------------------------------------------- address policy


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://idp.example.test/md", "is not allowed: use https"),
        ("ftp://idp.example.test/md", "is not allowed: use an https:// URL"),
        ("file:///etc/passwd", "has no host"),
        ("not a url", "has no host"),
        ("", "has no host"),
    ],
)
async def test_non_https_urls_are_forbidden(make_fetcher: Any, url: str, why: str) -> None:
    fetcher = make_fetcher(FetchPolicy(), network_backend=NoConnectBackend())
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch(url)
    assert exc.value.reason == "MetadataURLForbidden"
    assert why in exc.value.message


@pytest.mark.parametrize(
    ("url", "needs_private"),
    [
        ("http://127.0.0.1:8080/.well-known/openid-configuration", True),
        ("http://localhost:8080/md", True),
        ("http://10.0.0.7/md", True),
        ("http://idp.example.test/md", False),
    ],
)
async def test_an_http_refusal_names_every_setting_it_needs(make_fetcher: Any, url: str, needs_private: bool) -> None:
    """An http:// loopback issuer needs both settings; the message names both as the CLI and chart spell them."""
    fetcher = make_fetcher(FetchPolicy(), network_backend=NoConnectBackend())
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch(url)
    assert "--allow-insecure-http" in exc.value.message and "config.allowInsecureHTTP" in exc.value.message
    assert ("--allow-private-networks" in exc.value.message) is needs_private
    assert ("config.allowPrivateNetworks" in exc.value.message) is needs_private


# Each forbidden address and the class the refusal must name (the exact reason, not just "refused").
FORBIDDEN = {
    "127.0.0.1": "loopback",
    "10.0.0.1": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "cloud instance metadata",
    "::1": "loopback",
    "fe80::1": "link-local",
    "fc00::1": "private",
    "ff02::1": "multicast",
    "0.0.0.0": "unspecified",
    "::ffff:127.0.0.1": "loopback",
    "100.64.0.1": "carrier-grade NAT",
    "::": "unspecified",
    "224.0.0.1": "multicast",
    "255.255.255.255": "broadcast",
    "240.0.0.1": "private",  # 240/4 is in Python's private (reserved) ranges
    "fd12:3456::1": "private",
    "::ffff:10.0.0.1": "private",
    "2002:7f00:1::1": "loopback",  # 6to4 wrapping 127.0.0.1
    "64:ff9b::a00:1": "private",  # NAT64 wrapping 10.0.0.1
}
# Refused whatever the settings: the message must not suggest allowPrivateNetworks.
NEVER_ALLOWED = {"cloud instance metadata", "unspecified", "multicast", "broadcast"}


@pytest.mark.parametrize(("address", "why"), FORBIDDEN.items())
async def test_every_forbidden_address_class_via_dns(make_fetcher: Any, address: str, why: str) -> None:
    calls: list[str] = []
    fetcher = make_fetcher(
        FetchPolicy(),
        resolver=fake_resolver({"metadata.example.test": [address]}, calls),
        network_backend=NoConnectBackend(),
    )
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch("https://metadata.example.test/saml/metadata")
    assert exc.value.reason == "MetadataURLForbidden"
    assert f"metadata.example.test resolves to {address}, which is a {why} address" in exc.value.message
    assert ("allowPrivateNetworks" in exc.value.message) is (why not in NEVER_ALLOWED)
    assert calls == ["metadata.example.test"]


@pytest.mark.parametrize("address", ["169.254.169.254", "0.0.0.0", "224.0.0.1"])
async def test_never_allowed_addresses_stay_refused_with_private_networks_on(make_fetcher: Any, address: str) -> None:
    fetcher = make_fetcher(
        FetchPolicy(allow_private_networks=True),
        resolver=fake_resolver({"metadata.example.test": [address]}),
        network_backend=NoConnectBackend(),
    )
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch("https://metadata.example.test/saml/metadata")
    assert f"which is a {FORBIDDEN[address]} address" in exc.value.message
    assert "never allowed" in exc.value.message


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1"])
async def test_forbidden_ip_literals_skip_dns(make_fetcher: Any, address: str) -> None:
    calls: list[str] = []
    fetcher = make_fetcher(
        FetchPolicy(), resolver=fake_resolver({}, calls), network_backend=NoConnectBackend()
    )
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch(f"https://{host}/metadata")
    assert exc.value.reason == "MetadataURLForbidden"
    assert f"{address} is a {FORBIDDEN[address]} address" in exc.value.message
    assert calls == []


async def test_one_private_address_among_public_ones_is_refused(make_fetcher: Any) -> None:
    fetcher = make_fetcher(
        FetchPolicy(),
        resolver=fake_resolver({"idp.example.test": [PUBLIC_IP, "10.1.2.3"]}),
        network_backend=NoConnectBackend(),
    )
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch("https://idp.example.test/metadata")
    assert exc.value.reason == "MetadataURLForbidden"
    assert "10.1.2.3" in exc.value.message
    assert "allowPrivateNetworks" in exc.value.message


async def test_localhost_via_the_system_resolver_is_refused(make_fetcher: Any) -> None:
    fetcher = make_fetcher(FetchPolicy(allow_http=True), network_backend=NoConnectBackend())
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch("http://localhost:9/metadata")
    assert exc.value.reason == "MetadataURLForbidden"
    assert "which is a loopback address" in exc.value.message


async def test_connection_is_pinned_to_the_checked_address(serve: Any, make_fetcher: Any) -> None:
    """A rebinding DNS server answers public first, loopback afterwards: nobody asks twice."""
    answers = iter([[PUBLIC_IP], ["127.0.0.1"], ["127.0.0.1"]])
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        await respond(w, 200, METADATA)

    server = await serve(handler)
    nat = NATBackend()
    fetcher = make_fetcher(FetchPolicy(allow_http=True), resolver=rebinding, network_backend=nat)
    result = await fetcher.fetch(f"http://rebind.example.test:{server.port}/")
    assert result.body == METADATA
    assert calls == ["rebind.example.test"]
    assert nat.hosts == [PUBLIC_IP]  # the socket went to the checked IP, not to a name
    assert server.requests[0].headers["host"] == f"rebind.example.test:{server.port}"


def test_address_policy_allows_public_and_optionally_private() -> None:
    for public in ("8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"):
        assert forbidden_address_class(public) is None, public
    for private in ("10.0.0.1", "127.0.0.1", "fd00::1", "100.64.0.1", "fe80::1%eth0"):
        assert forbidden_address_class(private) is not None
        assert forbidden_address_class(private, allow_private_networks=True) is None
    # Never useful, even on a private network.
    for never in ("169.254.169.254", "fd00:ec2::254", "0.0.0.0", "::", "ff02::1", "224.0.0.1"):
        assert forbidden_address_class(never, allow_private_networks=True) is not None
    assert forbidden_address_class("idp.example.com") == "not an IP address"


@given(st.ip_addresses(v=4), st.booleans())
def test_ipv4_mapped_ipv6_is_judged_like_ipv4(ip: ipaddress.IPv4Address, allow: bool) -> None:
    mapped = f"::ffff:{ip}"
    assert forbidden_address_class(mapped, allow_private_networks=allow) == forbidden_address_class(
        str(ip), allow_private_networks=allow
    )


# --------------------------------------------------------------------------- TLS on the hostname


def _tls_material(tmp: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A CA, a server cert for ``name`` signed by it; returns (server context, client context)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyplane test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "server.pem", tmp / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server_ctx, client_ctx


async def test_tls_is_verified_against_the_hostname_not_the_pinned_ip(
    serve: Any, make_fetcher: Any, tmp_path: Path
) -> None:
    server_ctx, client_ctx = _tls_material(tmp_path, "idp.example.test")
    seen_sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)  # type: ignore[assignment]

    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        await respond(w, 200, METADATA)

    server = await serve(handler, ssl_context=server_ctx)
    fetcher = make_fetcher(
        FetchPolicy(allow_private_networks=True),
        resolver=fake_resolver({"idp.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]}),
        ssl_context=client_ctx,
    )
    result = await fetcher.fetch(f"https://idp.example.test:{server.port}/metadata")
    assert result.body == METADATA
    assert seen_sni == ["idp.example.test"]

    # Same IP, other name: the certificate doesn't cover it, so the fetch must fail.
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch(f"https://other.example.test:{server.port}/metadata")
    assert exc.value.reason == "MetadataUnreachable"
    assert "certificate" in exc.value.message


async def test_redirect_from_https_to_http_is_refused(serve: Any, make_fetcher: Any, tmp_path: Path) -> None:
    server_ctx, client_ctx = _tls_material(tmp_path, "idp.example.test")

    async def plain_handler(req: Request, w: asyncio.StreamWriter) -> None:
        await respond(w, 200, METADATA)

    plain = await serve(plain_handler)

    async def tls_handler(req: Request, w: asyncio.StreamWriter) -> None:
        await respond(w, 302, headers={"Location": f"http://idp.example.test:{plain.port}/metadata"})

    tls = await serve(tls_handler, ssl_context=server_ctx)
    fetcher = make_fetcher(
        FetchPolicy(allow_http=False, allow_private_networks=True),
        resolver=fake_resolver({"idp.example.test": ["127.0.0.1"]}),
        ssl_context=client_ctx,
    )
    with pytest.raises(FetchError) as exc:
        await fetcher.fetch(f"https://idp.example.test:{tls.port}/start")
    assert exc.value.reason == "MetadataURLForbidden"
    assert "use https" in exc.value.message
    assert tls.paths() == ["/start"]
    assert plain.requests == []


# --------------------------------------------------------------------------- shared cache


def counting_server(status: int = 200, delay: float = 0.0) -> Handler:
    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay)
        if status == 200 and req.headers.get("if-none-match") == '"v1"':
            await respond(w, 304, headers={"ETag": '"v1"'})
        else:
            await respond(w, status, METADATA, {"ETag": '"v1"'})

    return handler


async def test_cache_concurrent_callers_share_one_request(serve: Any, make_fetcher: Any) -> None:
    server = await serve(counting_server(delay=0.1))
    cache = SharedMetadataCache(make_fetcher())
    results = await asyncio.gather(
        *(cache.get(server.url(), max_age=dt.timedelta(hours=1), now=T0) for _ in range(20))
    )
    assert len(server.requests) == 1
    assert {r.body for r in results} == {METADATA}
    assert all(r.fetched_at == T0 for r in results)


async def test_cache_fresh_then_conditional_refresh(serve: Any, make_fetcher: Any) -> None:
    server = await serve(counting_server())
    cache = SharedMetadataCache(make_fetcher())
    clock = FrozenClock(T0)
    hour = dt.timedelta(hours=1)
    first = await cache.get(server.url(), max_age=hour, now=clock.now())

    clock.advance(dt.timedelta(minutes=59))
    again = await cache.get(server.url(), max_age=hour, now=clock.now())
    assert again is first
    assert len(server.requests) == 1  # within max_age: no request at all

    clock.advance(dt.timedelta(minutes=2))
    refreshed = await cache.get(server.url(), max_age=hour, now=clock.now())
    assert len(server.requests) == 2
    assert server.requests[1].headers["if-none-match"] == '"v1"'
    assert refreshed.not_modified
    assert refreshed.body == METADATA
    assert refreshed.sha256 == first.sha256
    assert refreshed.fetched_at == clock.now()

    # The 304 refreshed the entry's time: fresh again for another hour.
    clock.advance(dt.timedelta(minutes=30))
    await cache.get(server.url(), max_age=hour, now=clock.now())
    assert len(server.requests) == 2


async def test_cache_errors_reach_every_waiter_and_are_not_kept(serve: Any, make_fetcher: Any) -> None:
    server = await serve(counting_server(status=503, delay=0.05))
    cache = SharedMetadataCache(
        make_fetcher(),
        error_ttl=dt.timedelta(seconds=5),
        max_backoff=dt.timedelta(minutes=2),
        rng=lambda: 0.0,
    )
    url, age = server.url(), dt.timedelta(hours=1)
    outcomes = await asyncio.gather(
        *(cache.get(url, max_age=age, now=T0) for _ in range(5)), return_exceptions=True
    )
    assert len(server.requests) == 1
    assert all(isinstance(o, FetchError) and o.reason == "MetadataHTTPError" for o in outcomes)
    assert len({id(o) for o in outcomes}) == 5  # each waiter gets its own exception object
    assert cache.backoff(url) == dt.timedelta(seconds=30)

    # Within the short error window: the same error, no request.
    with pytest.raises(FetchError):
        await cache.get(url, max_age=age, now=T0 + dt.timedelta(seconds=1))
    assert len(server.requests) == 1

    # After it, callers may retry for real.
    for i, expected in enumerate((60, 120, 120), start=1):
        with pytest.raises(FetchError):
            await cache.get(url, max_age=age, now=T0 + dt.timedelta(seconds=10 * i))
        assert cache.backoff(url) == dt.timedelta(seconds=expected)  # doubling, capped at max_backoff
    assert len(server.requests) == 4


async def test_cache_success_resets_failures_and_keeps_validators(serve: Any, make_fetcher: Any) -> None:
    state = {"status": 200}

    async def handler(req: Request, w: asyncio.StreamWriter) -> None:
        if state["status"] != 200:
            await respond(w, state["status"])
        elif req.headers.get("if-none-match") == '"v1"':
            await respond(w, 304, headers={"ETag": '"v1"'})
        else:
            await respond(w, 200, METADATA, {"ETag": '"v1"'})

    server = await serve(handler)
    cache = SharedMetadataCache(make_fetcher(), error_ttl=dt.timedelta(0))
    url, age = server.url(), dt.timedelta(minutes=1)
    await cache.get(url, max_age=age, now=T0)
    state["status"] = 502
    with pytest.raises(FetchError):
        await cache.get(url, max_age=age, now=T0 + dt.timedelta(minutes=2))
    assert cache.failures(url) == 1
    assert dt.timedelta(seconds=22.5) <= cache.backoff(url) <= dt.timedelta(seconds=30)
    state["status"] = 200
    result = await cache.get(url, max_age=age, now=T0 + dt.timedelta(minutes=3))
    assert result.not_modified and result.body == METADATA  # the failure kept the cached validators
    assert cache.failures(url) == 0
    assert cache.backoff(url) == dt.timedelta(0)

    cache.forget(url)
    await cache.get(url, max_age=age, now=T0 + dt.timedelta(minutes=3))
    assert "if-none-match" not in server.requests[-1].headers


async def test_cache_waiter_cancellation_does_not_cancel_the_shared_fetch(
    serve: Any, make_fetcher: Any
) -> None:
    server = await serve(counting_server(delay=0.2))
    cache = SharedMetadataCache(make_fetcher())
    age = dt.timedelta(hours=1)
    impatient = asyncio.create_task(cache.get(server.url(), max_age=age, now=T0))
    patient = asyncio.create_task(cache.get(server.url(), max_age=age, now=T0))
    await asyncio.sleep(0.05)
    impatient.cancel()
    result = await patient
    assert result.body == METADATA
    assert impatient.cancelled()
    assert len(server.requests) == 1

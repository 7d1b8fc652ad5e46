"""Fetching IdP metadata (SAML metadata, OIDC discovery, JWKS) safely.

The URLs come from custom resources, i.e. from anyone who can create an IdentityProvider,
so the fetcher is an SSRF boundary: https only, no private/loopback/link-local targets
(unless the operator is configured to allow them), bounded time and size, and no
response body ever ends up in an error message.

Address pinning
---------------
The address check and the TCP connect happen in one place, :class:`_PinnedBackend`, an
httpcore network backend. httpcore asks it for a connection to ``(hostname, port)``; it
resolves the name itself, refuses if ANY resolved address is forbidden, then opens the
socket to one of exactly those checked IP addresses. The name is never resolved a second
time by anyone, so DNS rebinding between check and connect is impossible. TLS is layered
on top by httpcore with ``server_hostname`` = the URL's hostname, so SNI and certificate
verification stay on the name. The connection pool is keyed by hostname (not IP), so a
pooled TLS connection verified for one name is never reused for another name that
happens to share the IP. (Rewriting the URL to the IP with a Host header would get that
last point wrong.)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.cookiejar
import ipaddress
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Self

import httpcore
import httpx

from keyplane import __version__
from keyplane.policy.fetch import forbidden_address_class
from keyplane.setting_names import setting_hint
from keyplane.sources import errors as r
from keyplane.sources.clock import Clock, SystemClock
from keyplane.sources.errors import FetchError

# The policy, the result and the cache live in metadata_cache (no httpx there); importable from here too.
from keyplane.sources.metadata_cache import FetchPolicy, FetchResult
from keyplane.sources.metadata_cache import SharedMetadataCache as SharedMetadataCache
from keyplane.sources.metadata_cache import safe_url as _safe_url

logger = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]
USER_AGENT = f"keyplane/{__version__}"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


# --------------------------------------------------------------------------- addresses

# Which addresses may be reached is policy (keyplane.policy.fetch); this module pins connections to them.


def _literal_needs_private_networks(host: str) -> bool:
    """Whether ``host`` is an address (or ``localhost``) that only allowPrivateNetworks admits."""
    if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
        return True
    if not _is_ip_literal(host):
        return False
    forbidden = forbidden_address_class(host)
    return forbidden is not None and forbidden_address_class(host, allow_private_networks=True) is None




async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the OS resolver; distinct addresses in the order returned."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- transport


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks every address against the policy, then connects to a checked IP."""

    def __init__(self, policy: FetchPolicy, resolver: Resolver, inner: httpcore.AsyncNetworkBackend) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = inner

    async def _resolve(self, host: str, port: int) -> list[str]:
        if _is_ip_literal(host):
            return [host]
        try:
            async with asyncio.timeout(self._policy.connect_timeout):
                addresses = await self._resolver(host, port)
        except TimeoutError:
            raise FetchError(
                r.TIMEOUT,
                f"resolving {host} took longer than {self._policy.connect_timeout:g}s; check the cluster's DNS, "
                f"the fetch will be retried (limit: {setting_hint('metadata_connect_timeout')})",
            ) from None
        except (OSError, UnicodeError) as exc:
            raise FetchError(
                r.UNREACHABLE, f"could not resolve host {host}; check the URL and the cluster's DNS"
            ) from exc
        if not addresses:
            raise FetchError(r.UNREACHABLE, f"host {host} has no addresses; check the URL and DNS")
        return addresses

    def check(self, host: str, addresses: Iterable[str]) -> None:
        for address in addresses:
            why = forbidden_address_class(address, allow_private_networks=self._policy.allow_private_networks)
            if why is None:
                continue
            what = host if host == address else f"{host} resolves to {address}, which"
            # Suggest allowPrivateNetworks only where it would help (not for cloud metadata, multicast...).
            never = forbidden_address_class(address, allow_private_networks=True) is not None
            hint = (
                "this address is never allowed; use the IdP's real address"
                if never
                else f"use a public URL, or set {setting_hint('allow_private_networks')} if the IdP really is "
                "on the cluster network"
            )
            raise FetchError(r.URL_FORBIDDEN, f"{what} is a {why} address; {hint}")

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port)
        self.check(host, addresses)
        last: Exception | None = None
        for address in addresses:
            try:
                # `address` is the checked IP, never the name: this is the pin.
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise FetchError(r.URL_FORBIDDEN, "unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with its connection pool rebuilt on :class:`_PinnedBackend`.

    httpx has no public hook for the network backend; replacing ``_pool`` keeps httpx's
    request/response conversion and exception mapping. The attribute check below makes an
    httpx change fail loudly at start-up instead of silently dropping the address check.
    """

    def __init__(self, backend: _PinnedBackend, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        # trust_env=False: an HTTP(S)_PROXY variable would make the proxy the peer and
        # bypass the address check.
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("unsupported httpx version: AsyncHTTPTransport._pool not found")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=backend,
        )


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    # One IdP's metadata host must not plant cookies that ride along on another fetch.
    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


# --------------------------------------------------------------------------- fetcher


class MetadataFetcher:
    """Fetches metadata documents under a :class:`FetchPolicy`. One shared HTTP client inside.

    ``resolver`` maps (host, port) to IP address strings (default: the OS resolver).
    ``network_backend`` opens TCP connections to already-checked IPs (default: httpcore's
    anyio backend; tests inject one to reach local servers). ``ssl_context`` lets an
    installation trust a private CA.
    """

    def __init__(
        self,
        policy: FetchPolicy | None = None,
        *,
        resolver: Resolver | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.policy = policy or FetchPolicy()
        self._clock = clock or SystemClock()
        self._backend = _PinnedBackend(
            self.policy, resolver or system_resolver, network_backend or httpcore.AnyIOBackend()
        )
        self._ssl_context = ssl_context
        self._http: httpx.AsyncClient | None = None

    @property
    def _client(self) -> httpx.AsyncClient:
        """Made at the first fetch: an operator whose IdPs all carry inline metadata never loads the CA
        bundle (~3 MB resident) nor opens a pool."""
        if self._http is None:
            limits = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=30.0)
            transport = _PinnedTransport(self._backend, self._ssl_context or ssl.create_default_context(), limits)
            total = self.policy.total_timeout
            self._http = httpx.AsyncClient(
                transport=transport,
                follow_redirects=False,
                trust_env=False,
                timeout=httpx.Timeout(connect=self.policy.connect_timeout, read=total, write=total, pool=total),
                cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "*/*",
                    # Compressed bodies could inflate far past max_bytes inside a single chunk.
                    "Accept-Encoding": "identity",
                },
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        """GET ``url`` (conditionally when validators are given), following safe redirects."""
        try:
            async with asyncio.timeout(self.policy.total_timeout):
                return await self._fetch(url, etag, last_modified)
        except TimeoutError:
            raise FetchError(
                r.TIMEOUT,
                f"fetching {_safe_url(url)} did not complete within {self.policy.total_timeout:g}s; "
                "check that the IdP is reachable from the cluster, the fetch will be retried "
                f"(limit: {setting_hint('metadata_timeout')})",
            ) from None

    async def _fetch(self, url: str, etag: str | None, last_modified: str | None) -> FetchResult:
        current = self._parse(url)
        visited: set[str] = set()
        headers: dict[str, str] = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        for hop in range(self.policy.max_redirects + 1):
            self._check_scheme(current)
            logger.debug("GET %s (hop %d)", _safe_url(current), hop)
            visited.add(str(current))
            try:
                response = await self._client.send(
                    self._client.build_request("GET", current, headers=headers), stream=True
                )
            except httpx.HTTPError as exc:
                raise _map_httpx_error(exc, current) from exc
            try:
                if response.status_code in REDIRECT_STATUSES:
                    current = self._next_hop(current, response)
                    if str(current) in visited:
                        raise FetchError(
                            r.TOO_MANY_REDIRECTS,
                            f"{_safe_url(url)} redirects in a loop (back to {_safe_url(current)}); "
                            "fix the URL or the server's redirects",
                        )
                    continue
                return await self._final_answer(response, current, etag, last_modified)
            except httpx.HTTPError as exc:
                raise _map_httpx_error(exc, current) from exc
            finally:
                await response.aclose()
        raise FetchError(
            r.TOO_MANY_REDIRECTS,
            f"{_safe_url(url)} redirected more than {self.policy.max_redirects} times; "
            "use the final URL of the document",
        )

    async def _final_answer(
        self, response: httpx.Response, current: httpx.URL, etag: str | None, last_modified: str | None
    ) -> FetchResult:
        """What a non-redirect answer means: the document, "not modified", or the HTTP error it is."""
        if response.status_code == 304:
            return FetchResult(
                url=str(current),
                body=b"",
                sha256="",
                etag=response.headers.get("ETag") or etag,
                last_modified=response.headers.get("Last-Modified") or last_modified,
                not_modified=True,
                fetched_at=self._clock.now(),
            )
        if not 200 <= response.status_code < 300 or response.status_code in (204, 206):
            raise FetchError(
                r.HTTP_ERROR,
                f"{_safe_url(current)} returned HTTP {response.status_code}; "
                "check the URL and that the IdP publishes the document there",
            )
        body = await self._read_body(response, current)
        return FetchResult(
            url=str(current),
            body=body,
            sha256=hashlib.sha256(body).hexdigest(),
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            not_modified=False,
            fetched_at=self._clock.now(),
        )

    def _parse(self, url: str) -> httpx.URL:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise FetchError(
                r.URL_FORBIDDEN, "the metadata URL is not a valid URL; use an https:// URL"
            ) from None
        if not parsed.host:
            raise FetchError(r.URL_FORBIDDEN, f"{_safe_url(url)} has no host; use an absolute https:// URL")
        return parsed.copy_with(fragment=None)

    def _check_scheme(self, url: httpx.URL) -> None:
        allowed = ("https", "http") if self.policy.allow_http else ("https",)
        if url.scheme not in allowed:
            hint = (
                f"use https, or set {setting_hint('allow_insecure_http')} for a test IdP"
                if url.scheme == "http"
                else "use an https:// URL"
            )
            private = _literal_needs_private_networks(url.host) and not self.policy.allow_private_networks
            if url.scheme == "http" and private:
                hint += f" (this host also needs {setting_hint('allow_private_networks')})"
            raise FetchError(r.URL_FORBIDDEN, f"{_safe_url(url)} is not allowed: {hint}")

    def _next_hop(self, current: httpx.URL, response: httpx.Response) -> httpx.URL:
        location = response.headers.get("Location")
        if not location:
            raise FetchError(
                r.HTTP_ERROR, f"{_safe_url(current)} returned HTTP {response.status_code} without a Location"
            )
        try:
            target = current.join(location)
        except (httpx.InvalidURL, ValueError):
            raise FetchError(
                r.HTTP_ERROR, f"{_safe_url(current)} redirected to an invalid URL; fix the server's redirect"
            ) from None
        if not target.host:
            raise FetchError(r.HTTP_ERROR, f"{_safe_url(current)} redirected to a URL without a host")
        return target.copy_with(fragment=None)

    async def _read_body(self, response: httpx.Response, url: httpx.URL) -> bytes:
        limit = self.policy.max_bytes
        declared = response.headers.get("Content-Length")
        if declared is not None:
            with contextlib.suppress(ValueError):
                if int(declared) > limit:
                    raise _too_large(url, limit)
        # Content-Length may be absent or lie: count what actually arrives and stop at the cap.
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise _too_large(url, limit)
        return bytes(body)


def _too_large(url: httpx.URL, limit: int) -> FetchError:
    return FetchError(
        r.TOO_LARGE,
        f"{_safe_url(url)} is larger than the {limit}-byte limit; check the URL points at the metadata "
        f"document, or raise the operator's {setting_hint('metadata_max_bytes')}",
    )


def _map_httpx_error(exc: httpx.HTTPError, url: httpx.URL) -> FetchError:
    where = _safe_url(url)
    if isinstance(exc, httpx.TimeoutException):
        what = "connecting to" if isinstance(exc, httpx.ConnectTimeout) else "reading from"
        setting = "metadata_connect_timeout" if isinstance(exc, httpx.ConnectTimeout) else "metadata_timeout"
        return FetchError(
            r.TIMEOUT, f"timed out {what} {where}; the fetch will be retried (limit: {setting_hint(setting)})"
        )
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return FetchError(
                    r.UNREACHABLE,
                    f"TLS certificate of {where} could not be verified ({cause.verify_message}); "
                    "fix the server certificate or configure the operator to trust its CA",
                )
            if isinstance(cause, ssl.SSLError):
                return FetchError(r.UNREACHABLE, f"TLS handshake with {where} failed; check the URL's port")
            cause = cause.__cause__ or cause.__context__
        return FetchError(r.UNREACHABLE, f"could not connect to {where}; check the URL and network policies")
    if isinstance(exc, httpx.TransportError):
        return FetchError(
            r.UNREACHABLE, f"connection to {where} failed ({type(exc).__name__}); the fetch will be retried"
        )
    return FetchError(r.HTTP_ERROR, f"invalid response from {where} ({type(exc).__name__})")

"""Metadata fetching as the rest of Keyplane sees it: the policy, a fetch's result, the shared cache.

No HTTP client here. The client (httpx, with its address pinning) is `keyplane.sources.fetcher`'s
`MetadataFetcher`, imported only when a metadata URL is first fetched (`FetcherOnFirstUse`, in the
operator and in `keyplane render`). Settings, the runtime and the observe code import this module, so the
CLI, a render of inline metadata and an operator whose IdentityProviders all have inline metadata do not
pay httpx's import (~0.1 s, ~2.6 MB).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from keyplane.sources import errors as r
from keyplane.sources.errors import FetchError

if TYPE_CHECKING:
    from keyplane.sources.fetcher import MetadataFetcher


@dataclass(frozen=True)
class FetchPolicy:
    """What the fetcher may connect to, and how long/how much it may read."""

    allow_http: bool = False
    allow_private_networks: bool = False
    max_bytes: int = 1 << 20
    connect_timeout: float = 5.0
    total_timeout: float = 15.0
    max_redirects: int = 5


@dataclass(frozen=True)
class FetchResult:
    """One fetch. ``url`` is the final URL after redirects.

    When ``not_modified`` is true the server answered 304: ``body`` is empty and
    ``sha256`` is "" (the caller, e.g. :class:`SharedMetadataCache`, holds the body);
    ``etag``/``last_modified`` are the still-valid validators.
    """

    url: str
    body: bytes
    sha256: str
    etag: str | None
    last_modified: str | None
    not_modified: bool
    fetched_at: datetime


class MetadataSource(Protocol):
    """What :class:`SharedMetadataCache` fetches through (`keyplane.sources.fetcher.MetadataFetcher`)."""

    async def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None) -> FetchResult:
        ...


class FetcherOnFirstUse:
    """The MetadataFetcher, made when the first metadata URL is fetched: importing httpx (~2.6 MB) and loading
    the system's CA certificates cost ~0.15 s that inline metadata never needs."""

    def __init__(self, policy: FetchPolicy) -> None:
        self._policy = policy
        self._fetcher: MetadataFetcher | None = None

    async def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None) -> FetchResult:
        if self._fetcher is None:
            from keyplane.sources.fetcher import MetadataFetcher

            self._fetcher = MetadataFetcher(self._policy)
        return await self._fetcher.fetch(url, etag=etag, last_modified=last_modified)

    async def aclose(self) -> None:
        if self._fetcher is not None:
            await self._fetcher.aclose()
            self._fetcher = None  # a later pass (a render's second half, see _render_in_two_processes) makes another


def safe_url(url: object) -> str:
    """The URL for messages and logs: no userinfo, query or fragment (they may hold secrets)."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


# --------------------------------------------------------------------------- shared cache


@dataclass
class _Entry:
    result: FetchResult | None = None
    failures: int = 0
    error: FetchError | None = None
    failed_at: datetime | None = None


class SharedMetadataCache:
    """Fetch each URL once per refresh, however many IdentityProviders share it.

    Times are the callers' ``now`` (their clock), not the fetcher's. Results from the cache
    always carry a body; ``not_modified`` is true when the body was revalidated by a 304.
    """

    def __init__(
        self,
        fetcher: MetadataSource,
        *,
        max_backoff: timedelta = timedelta(minutes=30),
        error_ttl: timedelta = timedelta(seconds=5),
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._fetcher = fetcher
        self._max_backoff = max_backoff
        # Long enough to absorb a burst of reconciles after a failure, short enough that a
        # caller's own retry (after backoff()) really goes to the network.
        self._error_ttl = error_ttl
        self._rng = rng
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[FetchResult]] = {}

    async def get(self, url: str, *, max_age: timedelta, now: datetime) -> FetchResult:
        entry = self._entries.get(url)
        if entry is not None and entry.result is not None and now - entry.result.fetched_at < max_age:
            return entry.result
        if (
            entry is not None
            and entry.error is not None
            and entry.failed_at is not None
            and now - entry.failed_at < self._error_ttl
        ):
            raise entry.error.copy()
        task = self._inflight.get(url)
        if task is None:
            task = asyncio.create_task(self._refresh(url, now), name=f"keyplane-fetch {safe_url(url)}")
            self._inflight[url] = task
            task.add_done_callback(functools.partial(self._done, url))
        try:
            # shield: one waiter being cancelled must not cancel the fetch for the others.
            result = await asyncio.shield(task)
        except FetchError as exc:
            raise exc.copy() from None
        return result

    def _done(self, url: str, task: asyncio.Task[FetchResult]) -> None:
        if self._inflight.get(url) is task:
            del self._inflight[url]
        if not task.cancelled():
            task.exception()  # mark retrieved even if every waiter went away

    async def _refresh(self, url: str, now: datetime) -> FetchResult:
        entry = self._entries.get(url)
        cached = entry.result if entry else None
        try:
            fresh = await self._fetcher.fetch(
                url,
                etag=cached.etag if cached else None,
                last_modified=cached.last_modified if cached else None,
            )
        except FetchError as exc:
            entry = self._entries.setdefault(url, _Entry())
            entry.failures += 1
            entry.error = exc
            entry.failed_at = now
            raise
        if fresh.not_modified:
            if cached is None:  # validators we never sent; treat as a server bug
                raise FetchError(r.HTTP_ERROR, f"{safe_url(url)} answered 304 to an unconditional request")
            result = dataclasses.replace(
                cached, etag=fresh.etag, last_modified=fresh.last_modified, not_modified=True, fetched_at=now
            )
        else:
            result = dataclasses.replace(fresh, fetched_at=now)
        self._entries[url] = _Entry(result=result)
        return result

    def backoff(self, url: str) -> timedelta:
        """How long the caller should wait before retrying ``url``: 0 without failures, else
        30 s doubling per consecutive failure up to ``max_backoff``, minus up to 25 % jitter
        (so operators sharing an IdP don't retry in lockstep)."""
        entry = self._entries.get(url)
        if entry is None or entry.failures == 0:
            return timedelta(0)
        base = timedelta(seconds=30) * (2 ** min(entry.failures - 1, 32))
        capped = min(base, self._max_backoff)
        return capped * (1.0 - 0.25 * self._rng())

    def failures(self, url: str) -> int:
        entry = self._entries.get(url)
        return entry.failures if entry else 0

    def forget(self, url: str) -> None:
        """Drop everything known about ``url`` (e.g. no IdentityProvider uses it any more)."""
        self._entries.pop(url, None)

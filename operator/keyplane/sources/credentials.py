"""Kubernetes API credentials: one source for Kopf and Keyplane's own client, refreshed as it refreshes.

`ClusterCredentials` holds where the API server is, how to trust it and how to prove who we are. A
bearer token comes from a `TokenSource` and is cached until the source says to fetch it again:

* `TokenFile`: a ServiceAccount token projected into the pod. The kubelet rewrites the file before
  the token expires, so it is re-read when the copy in memory is a minute old (as client-go does).
* `ExecPlugin`: a kubeconfig `exec` credential plugin (client.authentication.k8s.io). It is run again
  when the token it returned reaches its `expirationTimestamp`.
* `StaticToken`: a kubeconfig `token:`. It never changes.

Whatever the source, a 401 from the API server makes the caller `refresh()` (one re-fetch however many
requests failed together) and retry. Loading the configuration (in-cluster or kubeconfig) lives in
`keyplane.sources.kubeconfig`; the two consumers are `KubeAPI` and the Kopf login handler.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

log = logging.getLogger("keyplane.credentials")

TOKEN_FILE_MAX_AGE = timedelta(minutes=1)
EXEC_TIMEOUT = 60.0  # seconds an exec plugin may take (cloud CLIs can be slow)
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(tz=UTC)


class CredentialsError(Exception):
    """The credentials cannot be loaded; the message names the file or setting to fix (never a secret)."""


@dataclass(frozen=True)
class Token:
    """A bearer token and when to fetch it again (None: only after the API server rejects it)."""

    value: str
    refresh_at: datetime | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"Token(refresh_at={self.refresh_at!r})"


class TokenSource(Protocol):
    """Where a bearer token comes from."""

    def describe(self) -> str: ...

    async def fetch(self, now: datetime) -> Token: ...


@dataclass(frozen=True)
class StaticToken:
    """A kubeconfig `token:` (fixed for the life of the process)."""

    value: str = field(repr=False)

    def describe(self) -> str:
        return "a static token"

    async def fetch(self, now: datetime) -> Token:
        return Token(self.value)


@dataclass(frozen=True)
class TokenFile:
    """A token in a file that its owner rewrites (projected ServiceAccount token, kubeconfig `tokenFile`)."""

    path: str
    max_age: timedelta = TOKEN_FILE_MAX_AGE

    def describe(self) -> str:
        return f"the token file {self.path}"

    async def fetch(self, now: datetime) -> Token:
        try:
            with open(self.path, encoding="utf-8") as f:
                value = f.read().strip()
        except OSError as exc:
            raise CredentialsError(f"cannot read the token file {self.path}: {exc.strerror}") from exc
        if not value:
            raise CredentialsError(f"the token file {self.path} is empty")
        return Token(value, refresh_at=now + self.max_age)


@dataclass(frozen=True)
class ExecPlugin:
    """A kubeconfig `exec:` credential plugin, run without a terminal (interactiveMode Always is refused)."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold secrets of the plugin
    api_version: str = EXEC_API_VERSIONS[0]
    cluster: Mapping[str, object] | None = None  # given to the plugin when provideClusterInfo is set
    timeout: float = EXEC_TIMEOUT

    def describe(self) -> str:
        return f"the exec plugin {self.command}"

    async def fetch(self, now: datetime) -> Token:
        spec: dict[str, object] = {"interactive": False}
        if self.cluster is not None:
            spec["cluster"] = dict(self.cluster)
        info = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec}
        environ = {**os.environ, **dict(self.env), "KUBERNETES_EXEC_INFO": json.dumps(info)}
        try:
            process = await asyncio.create_subprocess_exec(
                self.command, *self.args, env=environ, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise CredentialsError(f"cannot run the exec plugin {self.command}: {exc.strerror}") from exc
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), self.timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise CredentialsError(f"the exec plugin {self.command} did not answer within {self.timeout:.0f}s") \
                from None
        if process.returncode != 0:
            # The plugin's own stderr explains itself (expired login, missing profile); it carries no token.
            reason = stderr.decode(errors="replace").strip()[-300:]
            raise CredentialsError(f"the exec plugin {self.command} exited with {process.returncode}: {reason}")
        return self._parse(stdout)

    def _parse(self, stdout: bytes) -> Token:
        try:
            credential = json.loads(stdout)
            status = credential["status"]
        except (ValueError, KeyError, TypeError):
            raise CredentialsError(f"the exec plugin {self.command} printed no ExecCredential JSON") from None
        if credential.get("apiVersion") != self.api_version:
            raise CredentialsError(f"the exec plugin {self.command} answered in {credential.get('apiVersion')!r},"
                                   f" not the {self.api_version!r} its kubeconfig asks for")
        token = status.get("token") if isinstance(status, dict) else None
        if not token:
            raise CredentialsError(f"the exec plugin {self.command} returned no token (client certificates from"
                                   " exec plugins are not supported)")
        expires = status.get("expirationTimestamp")
        try:
            refresh_at = datetime.fromisoformat(expires) if expires else None
        except (TypeError, ValueError):
            raise CredentialsError(f"the exec plugin {self.command} returned an invalid expirationTimestamp"
                                   f" {expires!r}") from None
        if refresh_at is not None and refresh_at.tzinfo is None:
            refresh_at = refresh_at.replace(tzinfo=UTC)
        return Token(str(token), refresh_at=refresh_at)


@dataclass(frozen=True)
class TLS:
    """How to trust the API server and, optionally, the client certificate to present (paths or PEM data)."""

    ca_file: str | None = None
    ca_data: str | None = None
    insecure: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: str | None = field(default=None, repr=False)
    key_data: str | None = field(default=None, repr=False)

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.ca_file or self.ca_data:
            context = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_data:
            _load_cert_chain_from_memory(context, self.cert_data, self.key_data)
        return context


def _load_cert_chain_from_memory(context: ssl.SSLContext, cert: str, key: str | None) -> None:
    """`ssl` reads client keys only from files: write them to a private temporary file for a moment."""
    with tempfile.NamedTemporaryFile("w", prefix="keyplane-client-", suffix=".pem") as f:
        f.write(cert if key is None else f"{key.rstrip()}\n{cert}")
        f.flush()
        context.load_cert_chain(f.name)


class ClusterCredentials:
    """One API server and the credentials for it, shared by Kopf and `KubeAPI`."""

    def __init__(
        self,
        server: str,
        *,
        tls: TLS | None = None,
        token_source: TokenSource | None = None,
        default_namespace: str | None = None,
        origin: str = "",
        clock: Clock = utcnow,
    ) -> None:
        self.server = server.rstrip("/")
        self.tls = tls or TLS()
        self.token_source = token_source
        self.default_namespace = default_namespace
        self.origin = origin  # where it was loaded from, for log lines
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self._ssl: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        source = self.token_source.describe() if self.token_source else "no token"
        return f"<ClusterCredentials {self.server} ({source}; {self.origin})>"

    def ssl_context(self) -> ssl.SSLContext:
        """One TLS context (CA, client certificate) for every connection, built once."""
        if self._ssl is None:
            try:
                self._ssl = self.tls.context()
            except (OSError, ssl.SSLError) as exc:
                raise CredentialsError(f"cannot load the TLS files of {self.origin or self.server}: {exc}") from exc
        return self._ssl

    async def authorization(self) -> str | None:
        """The `Authorization` header value for the next request (None: client certificate only)."""
        if self.token_source is None:
            return None
        token = self._token
        if token is None or (token.refresh_at is not None and self._clock() >= token.refresh_at):
            token = await self._fetch(stale=token)
        return f"Bearer {token.value}"

    async def refresh(self, rejected: str | None = None) -> str | None:
        """Fetch the token again after a 401, unless another caller already replaced the `rejected` one."""
        if self.token_source is None:
            return None
        token = self._token
        if token is None or rejected is None or f"Bearer {token.value}" == rejected:
            token = await self._fetch(stale=token, force=True)
        return f"Bearer {token.value}"

    async def _fetch(self, stale: Token | None, force: bool = False) -> Token:
        assert self.token_source is not None
        async with self._lock:
            if self._token is not stale:  # fetched by a concurrent caller while we waited for the lock
                return self._token  # type: ignore[return-value]
            now = self._clock()
            try:
                self._token = await self.token_source.fetch(now)
            except CredentialsError as exc:
                if stale is None:
                    raise
                # Keep sending the token we have (a rotated-out token stays valid for a while) and try
                # again shortly: a hiccup of the source must not stop every request.
                log.warning("could not refresh the API credentials (%s); using the previous token", exc)
                self._token = Token(stale.value, refresh_at=now + timedelta(seconds=10))
            else:
                log.debug("API credentials fetched from %s%s", self.token_source.describe(),
                          " after a 401" if force else "")
            return self._token


"""Kopf's login: the operator's one `ClusterCredentials`, also used by Keyplane's own API client.

Kopf gets an aiohttp session whose every request asks the shared credentials for the current token, so
Kopf's watches and patches pick up a rotated ServiceAccount token or a renewed exec-plugin token at the
same moment as `KubeAPI` does, without Kopf dropping its session. When the API server answers 401, Kopf
discards the session and logs in again: this handler then fetches the token anew. If the source gives
the same token that was just refused, the next login waits (1 s, doubling up to a minute) and logs why,
so a revoked token shows up as a warning and a paced retry, not as a busy loop or a crash.

Why not a `kopf.ConnectionInfo`: it freezes one token. Kopf would send a rotated-out token until a 401
or the info's `expiration` (and expiring it on a schedule closes Kopf's session and every watch with
it), and after a 401 an identical info (the source not rotated yet) is refused by Kopf's vault, which
then fails with "Ran out of valid credentials".
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import kopf

from ..sources.credentials import ClusterCredentials, utcnow
from ..sources.kubeconfig import load_cluster_credentials

log = logging.getLogger("keyplane.operator")

RELOGIN_WINDOW = timedelta(minutes=5)  # a login this soon after the previous one is a repeated failure
MAX_RELOGIN_DELAY = 60.0


def cluster_credentials(memo: Any) -> ClusterCredentials:
    """The operator's credentials, loaded once (a test or an embedding app may put its own in the memo)."""
    credentials: ClusterCredentials | None = getattr(memo, "credentials", None)
    if credentials is None:
        credentials = memo.credentials = load_cluster_credentials()
        log.info("Kubernetes API credentials: %s", credentials)
    return credentials


@dataclass
class _Logins:
    """When Kopf last logged in, with which token, and how long the next identical re-login waits."""

    last_at: datetime | None = None
    last_authorization: str | None = field(default=None, repr=False)
    delay: float = 0.0

    def next_delay(self, now: datetime, authorization: str | None) -> float:
        repeated = (self.last_at is not None and now - self.last_at < RELOGIN_WINDOW
                    and authorization == self.last_authorization)
        self.delay = min(max(self.delay * 2, 1.0), MAX_RELOGIN_DELAY) if repeated else 0.0
        return self.delay


@kopf.on.login()
async def login(memo: Any, settings: kopf.OperatorSettings, **_: Any) -> kopf.AiohttpSession:
    credentials = cluster_credentials(memo)
    logins: _Logins | None = getattr(memo, "kopf_logins", None)
    if logins is None:
        logins = memo.kopf_logins = _Logins()
    if logins.last_at is None:
        authorization = await credentials.authorization()
    else:  # Kopf logs in again only when the API server refused the session (or it broke): fetch anew
        authorization = await credentials.refresh()
    delay = logins.next_delay(utcnow(), authorization)
    if delay:
        log.warning("Kopf logs in again with unchanged credentials (%s) soon after the API server refused them"
                    " or the connection broke; next try in %.0fs", credentials, delay)
        await asyncio.sleep(delay)
    logins.last_at, logins.last_authorization = utcnow(), authorization
    return kopf_session(credentials, trust_env=settings.networking.trust_env)


def kopf_session(credentials: ClusterCredentials, *, trust_env: bool = False) -> kopf.AiohttpSession:
    """An aiohttp session for Kopf that takes TLS and the current token from `credentials`."""

    async def authorize(request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        authorization = await credentials.authorization()
        if authorization is not None:
            request.headers["Authorization"] = authorization
        return await handler(request)

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=credentials.ssl_context()),
        middlewares=(authorize,),
        trust_env=trust_env,
    )
    return kopf.AiohttpSession(
        server=credentials.server, default_namespace=credentials.default_namespace, aiohttp_session=session,
    )

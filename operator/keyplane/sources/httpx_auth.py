"""The operator's `ClusterCredentials` as an httpx auth flow, for httpx clients of the same API server.

The operator itself talks to the API server with aiohttp (`KubeAPI`, as Kopf does); the e2e suite's
admin client and the bench's external mode use httpx and authenticate with this.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx

from .credentials import ClusterCredentials


class ClusterAuth(httpx.Auth):
    """Sends the credentials' current token; on a 401, fetches it again once and retries the request."""

    def __init__(self, credentials: ClusterCredentials) -> None:
        self.credentials = credentials

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        sent = await self.credentials.authorization()
        if sent is not None:
            request.headers["Authorization"] = sent
        response = yield request
        if response.status_code != 401 or sent is None:
            return
        fresh = await self.credentials.refresh(rejected=sent)
        if fresh is not None:
            request.headers["Authorization"] = fresh
            yield request

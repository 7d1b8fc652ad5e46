"""A metadata / OIDC discovery server on 127.0.0.1 whose answers a test controls."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Document:
    body: bytes
    status: int = 200
    content_type: str = "application/xml"


@dataclass
class IdPServer:
    """Serves `documents[path]` with ETags (answering If-None-Match with 304) and counts requests."""

    documents: dict[str, Document] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, If-None-Match)
    url: str = ""
    etags: bool = True  # False: every answer is a 200 with the whole document
    _runner: web.AppRunner | None = None

    def put(self, path: str, body: str | bytes, *, status: int = 200, content_type: str = "application/xml") -> None:
        self.documents[path] = Document(body.encode() if isinstance(body, str) else body, status, content_type)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, request.headers.get("If-None-Match")))
        doc = self.documents.get(request.path)
        if doc is None:
            return web.Response(status=404, text="not found")
        if doc.status != 200:
            return web.Response(status=doc.status, text="error")
        etag = '"' + hashlib.sha256(doc.body).hexdigest()[:16] + '"'
        if not self.etags:
            return web.Response(body=doc.body, content_type=doc.content_type)
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=doc.body, content_type=doc.content_type, headers={"ETag": etag})

    async def start(self) -> IdPServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def discovery(issuer: str, base: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/jwks",
        "userinfo_endpoint": f"{base}/userinfo",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }

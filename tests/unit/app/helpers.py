"""Shared helpers of the app-side tests: bundle builder, tokens, an ASGI app called from WSGI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

OKTA_TOKEN = "okta-token-current"
OKTA_OLD_TOKEN = "okta-token-previous"
ENTRA_TOKEN = "entra-token"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bundle_dict(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "keyplane.dev/bundle-v1",
        "roles": ["Admin", "Member", "Viewer"],
        "identityProviders": {
            "okta": {
                "protocol": "SAML",
                "displayName": "Okta",
                "saml": {"strict": True, "sp": {}, "idp": {}, "security": {}},
                "attributeMapping": {"email": "email", "groups": "groups"},
            },
            "entra": {
                "protocol": "SAML",
                "displayName": "Entra ID",
                "saml": {"strict": True, "sp": {}, "idp": {}, "security": {}},
            },
        },
        "domains": {
            "acme.com": {
                "identityProvider": "okta",
                "enforcement": "Required",
                "breakGlassUsers": ["root@acme.com"],
            },
            "contoso.com": {"identityProvider": "entra", "enforcement": "Optional"},
        },
        "scim": {
            "okta": {
                "endpointPath": "/scim/v2/okta",
                "tokenHashes": [
                    {"sha256": sha(OKTA_TOKEN), "notAfter": None},
                    {"sha256": sha(OKTA_OLD_TOKEN), "notAfter": "2026-11-24T10:00:00Z"},
                ],
                "identityProvider": "okta",
                "defaultUserRole": "Viewer",
                "deprovisionAction": "Deactivate",
                "userIdentifier": "email",
                "groupBindings": {"platform-admins": "Admin", "data-engineering": "Member"},
                "unboundGroupRole": "None",
            },
            "entra": {
                "endpointPath": "/scim/v2/entra",
                "tokenHashes": [{"sha256": sha(ENTRA_TOKEN), "notAfter": None}],
                "identityProvider": "entra",
                "defaultUserRole": "Viewer",
                "deprovisionAction": "Delete",
                "userIdentifier": "userName",
                "groupBindings": {"Platform Admins": "Admin"},
                "unboundGroupRole": "Member",
            },
        },
    }
    document.update(overrides)
    return document


def write_bundle(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document))
    return path


class AsgiAsWsgi:
    """Calls an ASGI app from synchronous code (scim2-tester's client is synchronous).

    The ASGI app runs on an event loop in a background thread; ``close()`` stops it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _call(self, scope: dict[str, Any], body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        sent = False
        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, headers, b"".join(chunks)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
        headers = [
            (k[5:].replace("_", "-").lower().encode(), v.encode("latin-1"))
            for k, v in environ.items()
            if k.startswith("HTTP_")
        ]
        if environ.get("CONTENT_TYPE"):
            headers.append((b"content-type", environ["CONTENT_TYPE"].encode()))
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": environ["REQUEST_METHOD"],
            "scheme": environ.get("wsgi.url_scheme", "http"),
            "path": path,
            "raw_path": path.encode("latin-1"),
            "root_path": "",
            "query_string": environ.get("QUERY_STRING", "").encode("latin-1"),
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": (environ.get("SERVER_NAME", "localhost"), int(environ.get("SERVER_PORT", 80))),
        }
        status, response_headers, content = asyncio.run_coroutine_threadsafe(
            self._call(scope, body), self.loop
        ).result(30)
        reason = {200: "OK", 201: "Created", 204: "No Content"}.get(status, "Status")
        start_response(
            f"{status} {reason}", [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response_headers]
        )
        return [content]

"""A tiny OIDC provider for tests: discovery, authorize, token (PKCE-checked), JWKS and userinfo, on 127.0.0.1.

Hand-written on purpose, ONLY for what a real provider will not produce: ID tokens with chosen claims
missing or odd (``email_verified: "false"``), token endpoints that answer HTML, a JSON array or an error
(``token_answer``), a JWKS that is not one (``jwks_answer``), and a userinfo endpoint that speaks of
another subject (``userinfo_answer``). It counts token requests so a test can tell a replay never
reached it. The happy paths (code flow, userinfo, key rotation, ES256, logout) are tested against the
real oidc-provider in tests/peers/.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
import threading
import time
from typing import Any

import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "keyplane-test-client"
CLIENT_SECRET = "test-client-secret"


class FakeOidcProvider:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.codes: dict[str, dict[str, Any]] = {}
        self.claims_override: dict[str, Any] = {}
        self.claims_removed: set[str] = set()
        self.token_answer: Response | None = None
        self.jwks_answer: Response | None = None
        self.userinfo_answer: dict[str, Any] | None = None
        self.token_requests = 0
        self.jwks_requests = 0
        self.jwks_cache_control = ""
        self.email = "dana@corp.example"
        self.groups = ["platform-admins"]
        self.port = 0
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
                Route("/userinfo", self.userinfo),
            ]
        )

    def reset(self) -> None:
        self.claims_override.clear()
        self.claims_removed.clear()
        self.token_answer = None
        self.jwks_answer = None
        self.userinfo_answer = None
        self.token_requests = 0
        self.jwks_requests = 0
        self.jwks_cache_control = ""

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID
        assert q["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "nonce": q["nonce"],
            "challenge": q["code_challenge"],
            "redirect_uri": q["redirect_uri"],
        }
        return RedirectResponse(f"{q['redirect_uri']}?code={code}&state={q['state']}", status_code=302)

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        if self.token_answer is not None:
            return self.token_answer
        form = await request.form()
        auth = base64.b64decode(request.headers["authorization"].split()[1]).decode()
        if auth != f"{CLIENT_ID}:{CLIENT_SECRET}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.codes.pop(str(form["code"]), None)
        if grant is None or form["redirect_uri"] != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        digest = hashlib.sha256(str(form["code_verifier"]).encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, status_code=400)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "user-1",
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            "email": self.email,
            "email_verified": True,
            "groups": self.groups,
            **self.claims_override,
        }
        for claim in self.claims_removed:
            claims.pop(claim, None)
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
        return JSONResponse({"access_token": "at", "token_type": "Bearer", "id_token": id_token})

    async def userinfo(self, request: Request) -> Response:
        assert request.headers["authorization"] == "Bearer at"
        return JSONResponse(self.userinfo_answer or {"sub": "user-1"})

    async def jwks(self, request: Request) -> Response:
        self.jwks_requests += 1
        if self.jwks_answer is not None:
            return self.jwks_answer
        headers = {"Cache-Control": self.jwks_cache_control} if self.jwks_cache_control else None
        return JSONResponse(KeySet([self.key]).as_dict(private=False), headers=headers)

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "fake OIDC provider did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        assert self.server is not None and self.thread is not None
        self.server.should_exit = True
        self.thread.join(10)

"""panva's oidc-provider (npm) run by node on 127.0.0.1, and a scripted browser through its login.

The provider runs with its defaults (``conformIdTokenClaims``: email and groups from userinfo only in
the code flow, PKCE required, RP-initiated logout); the test chooses clients, accounts and signing
keys and restarts it to rotate them. Login and consent are the provider's devInteractions forms.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from joserfc.jwk import ECKey, RSAKey

from .availability import OIDC_PROVIDER_MODULE, need_node_oidc_provider

SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
CLIENT_ID = "keyplane"
CLIENT_SECRET = "a-test-client-secret-of-enough-length"
ES_CLIENT_ID = "keyplane-es256"
REDIRECT_URI = "https://app.example.com/sso/oidc/corp/callback"
ES_REDIRECT_URI = "https://app.example.com/sso/oidc/ec/callback"
#: keyplane.app's post-logout landing of each client (derived from its redirect URI).
POST_LOGOUT_URI = "https://app.example.com/sso/oidc/corp/logged-out"
ES_POST_LOGOUT_URI = "https://app.example.com/sso/oidc/ec/logged-out"


def rsa_key(kid: str) -> dict[str, Any]:
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
    return dict(key.as_dict(private=True))


def ec_key(kid: str) -> dict[str, Any]:
    key = ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig", "alg": "ES256"})
    return dict(key.as_dict(private=True))


class OidcProviderPeer:
    """One node process serving oidc-provider; ``restart`` changes its keys or options."""

    def __init__(self) -> None:
        self.node = need_node_oidc_provider()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.dir = tempfile.TemporaryDirectory(prefix="keyplane-oidc-peer-")
        self.process: subprocess.Popen[bytes] | None = None
        self.accounts: dict[str, dict[str, Any]] = {
            "dana": {"email": "dana@corp.example", "email_verified": True, "groups": ["platform-admins"]},
        }
        self.keys: list[dict[str, Any]] = [rsa_key("rsa-1"), ec_key("ec-1")]
        self.conform_id_token_claims = True

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> dict[str, Any]:
        common = {
            "client_secret": CLIENT_SECRET,
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }
        return {
            "port": self.port,
            "jwks": {"keys": self.keys},
            "accounts": self.accounts,
            "conformIdTokenClaims": self.conform_id_token_claims,
            "clients": [
                {
                    **common,
                    "client_id": CLIENT_ID,
                    "redirect_uris": [REDIRECT_URI],
                    "post_logout_redirect_uris": [POST_LOGOUT_URI],
                },
                {
                    **common,
                    "client_id": ES_CLIENT_ID,
                    "redirect_uris": [ES_REDIRECT_URI],
                    "post_logout_redirect_uris": [ES_POST_LOGOUT_URI],
                    "id_token_signed_response_alg": "ES256",
                },
            ],
        }

    def start(self) -> None:
        folder = Path(self.dir.name)
        config, log = folder / "config.json", folder / "provider.log"
        config.write_text(json.dumps(self._config()))
        env = {**os.environ, "OIDC_PROVIDER_MODULE": str(OIDC_PROVIDER_MODULE), "NODE_ENV": "development"}
        # Output to a file, not a pipe nobody reads: a full pipe would stall the provider.
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [self.node, str(SCRIPT), str(config)], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            if b"listening " in log.read_bytes():
                return
            time.sleep(0.05)
        output = log.read_bytes().decode(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"oidc-provider did not start: {output}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self.dir.cleanup()


_PROMPT = re.compile(r'name="prompt" value="(\w+)"')


async def sign_in(net: httpx.AsyncClient, authorize_url: str, login: str = "dana") -> str:
    """Drive the provider's login and consent forms as a browser would; the redirect back to the app."""
    response = await net.get(authorize_url)
    for _ in range(20):
        url = str(response.url)
        if response.status_code in (302, 303):
            location = urljoin(url, response.headers["location"])
            if urlsplit(location).hostname != "127.0.0.1":
                return location
            response = await net.get(location)
            continue
        match = _PROMPT.search(response.text)
        assert response.status_code == 200 and match, f"unexpected provider page: {response.status_code} {url}"
        form = {"prompt": match.group(1)}
        if match.group(1) == "login":
            form.update(login=login, password="any")
        response = await net.post(url, data=form)
    raise AssertionError("the provider's interaction did not end")


_LOGOUT_FORM = re.compile(
    r'<form id="op.logoutForm" method="post" action="([^"]+)"><input type="hidden" name="xsrf" value="([^"]+)"'
)


async def confirm_logout(net: httpx.AsyncClient, end_session_url: str) -> str:
    """Answer the provider's "sign out?" page with yes; the redirect back to the app."""
    page = await net.get(end_session_url)
    match = _LOGOUT_FORM.search(page.text)
    assert page.status_code == 200 and match, f"unexpected logout page: {page.status_code}"
    r = await net.post(urljoin(end_session_url, match.group(1)), data={"xsrf": match.group(2), "logout": "yes"})
    assert r.status_code in (302, 303), r.text
    return str(r.headers["location"])


async def needs_login(net: httpx.AsyncClient, authorize_url: str) -> bool:
    """Whether the provider asks this browser to sign in again (its session is gone)."""
    r = await net.get(authorize_url)
    while r.status_code in (302, 303) and urlsplit(urljoin(str(r.url), r.headers["location"])).hostname == "127.0.0.1":
        r = await net.get(urljoin(str(r.url), r.headers["location"]))
    return r.status_code == 200 and 'name="prompt" value="login"' in r.text

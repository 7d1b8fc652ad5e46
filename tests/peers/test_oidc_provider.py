"""keyplane.app against panva's oidc-provider: the full code flow with PKCE, as a browser does it.

One provider process per module; tests that change its keys or options restart it and put the
defaults back. Keyplane reaches it over http on 127.0.0.1 (the app has no SSRF policy of its own;
the operator's --allow-insecure-http / --allow-private-networks concern discovery in the cluster).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from keyplane.app import Bundle, BundleStore, Keyplane
from keyplane.app.logout import LogoutEvent

from .oidc_peer import (
    CLIENT_ID,
    CLIENT_SECRET,
    ES_CLIENT_ID,
    ES_REDIRECT_URI,
    POST_LOGOUT_URI,
    REDIRECT_URI,
    OidcProviderPeer,
    confirm_logout,
    needs_login,
    rsa_key,
    sign_in,
)


@pytest.fixture(scope="module")
def peer() -> Iterator[OidcProviderPeer]:
    provider = OidcProviderPeer()
    provider.start()
    yield provider
    provider.close()


@pytest.fixture
def defaults(peer: OidcProviderPeer) -> Iterator[OidcProviderPeer]:
    """The provider as configured by default again after a test that changed it."""
    keys, conform = list(peer.keys), peer.conform_id_token_claims
    yield peer
    if (keys, conform) != (peer.keys, peer.conform_id_token_claims):
        peer.keys, peer.conform_id_token_claims = keys, conform
        peer.restart()


def bundle(issuer: str) -> dict[str, Any]:
    def idp(client_id: str, redirect_uri: str) -> dict[str, Any]:
        return {
            "protocol": "OIDC",
            "displayName": client_id,
            "oidc": {
                "issuer": issuer,
                "clientID": client_id,
                "clientSecret": CLIENT_SECRET,
                "scopes": ["openid", "email", "profile", "groups"],
                "redirectURI": redirect_uri,
            },
            "claimMapping": {"email": "email", "groups": "groups"},
        }

    return {
        "apiVersion": "keyplane.dev/bundle-v1",
        "roles": ["Admin", "Member", "Viewer"],
        "identityProviders": {"corp": idp(CLIENT_ID, REDIRECT_URI), "ec": idp(ES_CLIENT_ID, ES_REDIRECT_URI)},
        "domains": {"corp.example": {"identityProvider": "corp", "enforcement": "Required"}},
        "scim": {
            "corp": {
                "endpointPath": "/scim/v2/corp",
                "tokenHashes": [],
                "identityProvider": "corp",
                "defaultUserRole": "Viewer",
                "deprovisionAction": "Deactivate",
                "userIdentifier": "email",
                "groupBindings": {"platform-admins": "Admin"},
                "unboundGroupRole": "None",
            }
        },
    }


class Wire:
    """What keyplane.app's HTTP client sent and got: (method, path, JSON body)."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[str, str, Any]] = []

    async def record(self, response: httpx.Response) -> None:
        await response.aread()
        try:
            body = response.json()
        except ValueError:
            body = None
        self.exchanges.append((response.request.method, response.request.url.path, body))

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.exchanges]

    def id_token_claims(self) -> dict[str, Any]:
        token = next(body["id_token"] for _, path, body in self.exchanges if path.endswith("/token"))
        payload = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "==")))


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
async def kp(peer: OidcProviderPeer, wire: Wire) -> AsyncIterator[Keyplane]:
    http = httpx.AsyncClient(timeout=10.0, event_hooks={"response": [wire.record]})
    # From JSON bytes, as the app reads identity.json: the login objects (and their JWKS cache) persist.
    store = BundleStore.from_bundle(Bundle.from_json(json.dumps(bundle(peer.issuer)).encode()))
    app = Keyplane(store, secret_key="s3cret", http=http)
    yield app
    await app.aclose()


async def login(
    kp: Keyplane, idp: str = "corp", net: httpx.AsyncClient | None = None
) -> tuple[httpx.Response, httpx.AsyncClient]:
    """A browser's login through ``idp``: the app's answer to the callback, and the browser.

    ``net`` is the browser at the provider (its cookies are the provider's session).
    """
    browser = httpx.AsyncClient(transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://app.example.com")
    r = await browser.get(f"/sso/oidc/{idp}/login", params={"next": "/home"})
    assert r.status_code == 302, r.text
    authorize = parse_qs(urlsplit(r.headers["location"]).query)
    assert authorize["code_challenge_method"] == ["S256"] and "code_verifier" not in r.headers["location"]
    async with contextlib.AsyncExitStack() as stack:
        if net is None:
            net = await stack.enter_async_context(httpx.AsyncClient())
        callback = urlsplit(await sign_in(net, r.headers["location"]))
    assert callback.path == f"/sso/oidc/{idp}/callback", callback
    params = {k: v[0] for k, v in parse_qs(callback.query).items()}
    return await browser.get(callback.path, params=params), browser


def session(kp: Keyplane, response: httpx.Response) -> dict[str, Any]:
    return dict(kp._signer.loads(response.cookies["keyplane_session"], salt="keyplane.session"))


async def test_defaults_put_email_and_groups_in_userinfo_only(kp: Keyplane, wire: Wire) -> None:
    r, browser = await login(kp)
    await browser.aclose()
    assert r.status_code == 303, r.text
    user = session(kp, r)
    assert user["email"] == "dana@corp.example" and user["groups"] == ["platform-admins"]
    assert user["role"] == "Admin"
    # The provider's ID token really was thin: the email came from userinfo.
    assert "email" not in wire.id_token_claims() and "groups" not in wire.id_token_claims()
    assert "/me" in wire.paths()


async def test_claims_in_the_id_token_need_no_userinfo(kp: Keyplane, wire: Wire, defaults: OidcProviderPeer) -> None:
    defaults.conform_id_token_claims = False
    defaults.restart()
    r, browser = await login(kp)
    await browser.aclose()
    assert r.status_code == 303, r.text
    assert session(kp, r)["email"] == "dana@corp.example"
    assert wire.id_token_claims()["email"] == "dana@corp.example"
    assert "/me" not in wire.paths()


async def test_unverified_email_from_userinfo_is_refused(kp: Keyplane, defaults: OidcProviderPeer) -> None:
    defaults.accounts["dana"]["email_verified"] = False
    defaults.restart()
    try:
        r, browser = await login(kp)
        await browser.aclose()
    finally:
        defaults.accounts["dana"]["email_verified"] = True
        defaults.restart()
    assert r.status_code == 403 and "not verified" in r.text
    assert "keyplane_session" not in r.cookies


async def test_es256_id_tokens(kp: Keyplane, wire: Wire) -> None:
    r, browser = await login(kp, "ec")
    await browser.aclose()
    # ec has no domain of its own: the login is refused by the domain rule, after the token checked out.
    assert r.status_code == 403 and "corp.example belongs to identity provider corp" in r.text, r.text
    token = next(body["id_token"] for _, path, body in wire.exchanges if path.endswith("/token"))
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["alg"] == "ES256"


async def test_key_rotation_new_and_old_then_an_abrupt_switch(
    kp: Keyplane, wire: Wire, defaults: OidcProviderPeer
) -> None:
    r, browser = await login(kp)
    await browser.aclose()
    assert r.status_code == 303, r.text
    # The provider signs with a new key and still publishes the old one.
    old = defaults.keys[0]
    defaults.keys = [rsa_key("rsa-2"), old, *defaults.keys[1:]]
    defaults.restart()
    r, browser = await login(kp)
    await browser.aclose()
    assert r.status_code == 303, r.text
    # The old key is gone at once (a compromised key is removed without a grace period).
    defaults.keys = [rsa_key("rsa-3"), *defaults.keys[2:]]
    defaults.restart()
    r, browser = await login(kp)
    await browser.aclose()
    assert r.status_code == 303, r.text
    jwks = [path for path in wire.paths() if path.endswith("/jwks")]
    assert len(jwks) == 3  # the first login, then once per new key: no polling in between


async def test_rp_initiated_logout_ends_the_provider_session(kp: Keyplane, wire: Wire) -> None:
    logouts: list[LogoutEvent] = []
    kp.on_logout = lambda request, event: logouts.append(event)
    async with httpx.AsyncClient() as net:
        r, browser = await login(kp, net=net)
        assert r.status_code == 303 and "keyplane_session" in browser.cookies
        authorize, _ = await kp.oidc("corp").start("/")
        assert not await needs_login(net, authorize)  # signed in at the provider
        r = await browser.get("/sso/oidc/corp/logout", params={"next": "/bye"})
        assert r.status_code == 302, r.text
        assert "keyplane_session" not in browser.cookies
        end_session = r.headers["location"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(end_session).query).items()}
        token = next(body["id_token"] for _, path, body in wire.exchanges if path.endswith("/token"))
        assert query["id_token_hint"] == token and query["post_logout_redirect_uri"] == POST_LOGOUT_URI
        assert logouts == [LogoutEvent("corp", "OIDC", logouts[0].subject, "app", (), "dana@corp.example")]
        back = urlsplit(await confirm_logout(net, end_session))
        assert f"{back.scheme}://{back.netloc}{back.path}" == POST_LOGOUT_URI
        r = await browser.get(back.path, params={"state": parse_qs(back.query)["state"][0]})
        assert r.status_code == 303 and r.headers["location"] == "/bye"
        await browser.aclose()
        # The provider's session is gone: the next login asks for the password again.
        authorize, _ = await kp.oidc("corp").start("/")
        assert await needs_login(net, authorize)

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from keyplane.app import Bundle, BundleStore, Keyplane, Storage

from .helpers import bundle_dict
from .oidc_provider import CLIENT_ID, CLIENT_SECRET, FakeOidcProvider


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOidcProvider]:
    fake = FakeOidcProvider()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
async def oidc_kp(provider: FakeOidcProvider, storage: Storage) -> AsyncIterator[Keyplane]:
    provider.claims_override.clear()
    document = bundle_dict()
    document["identityProviders"]["corp"] = {
        "protocol": "OIDC",
        "displayName": "Corp",
        "oidc": {
            "issuer": provider.issuer,
            "clientID": CLIENT_ID,
            "clientSecret": CLIENT_SECRET,
            "scopes": ["openid", "email", "profile"],
            "redirectURI": "https://app.example.com/sso/oidc/corp/callback",
        },
        "claimMapping": {"email": "email", "groups": "groups"},
    }
    document["domains"]["corp.example"] = {"identityProvider": "corp", "enforcement": "Required"}
    document["scim"]["okta"]["identityProvider"] = "corp"
    kp = Keyplane(BundleStore.from_bundle(Bundle.from_dict(document)), secret_key="s3cret", storage=storage)
    yield kp
    await kp.aclose()


async def login(kp: Keyplane, *, tamper_state: bool = False) -> httpx.Response:
    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://app.example.com"
        ) as browser,
        httpx.AsyncClient() as net,
    ):
        r = await browser.get("/sso/oidc/corp/login", params={"next": "/home", "email": "dana@corp.example"})
        assert r.status_code == 302, r.text
        authorize = r.headers["location"]
        query = parse_qs(urlsplit(authorize).query)
        assert query["code_challenge_method"] == ["S256"] and "nonce" in query and "state" in query
        assert "code_verifier" not in authorize
        r = await net.get(authorize)  # the browser at the provider (on 127.0.0.1)
        assert r.status_code == 302
        callback = urlsplit(r.headers["location"])
        params = dict(parse_qs(callback.query))
        if tamper_state:
            params["state"] = ["forged"]
        return await browser.get(callback.path, params={k: v[0] for k, v in params.items()})


async def test_code_pkce_round_trip(oidc_kp: Keyplane) -> None:
    r = await login(oidc_kp)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/home"
    session = oidc_kp._signer.loads(r.cookies["keyplane_session"], salt="keyplane.session")
    assert session["email"] == "dana@corp.example" and session["role"] == "Admin"
    assert session["protocol"] == "OIDC"


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"iss": "https://evil.example"}, "iss"),
        ({"aud": "someone-else"}, "aud"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "exp"),
        ({"nonce": "replayed-nonce"}, "nonce"),
        ({"email_verified": False}, "not verified"),
    ],
)
async def test_bad_id_tokens_refused(
    oidc_kp: Keyplane, provider: FakeOidcProvider, override: dict[str, object], reason: str
) -> None:
    provider.claims_override.update(override)
    r = await login(oidc_kp)
    assert r.status_code == 403, r.text
    assert reason in r.text
    assert "keyplane_session" not in r.cookies


async def test_state_mismatch_refused(oidc_kp: Keyplane) -> None:
    r = await login(oidc_kp, tamper_state=True)
    assert r.status_code == 403 and "state" in r.text

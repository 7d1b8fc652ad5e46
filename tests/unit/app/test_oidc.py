from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.responses import JSONResponse, Response

from keyplane.app import Bundle, BundleStore, Keyplane, Storage
from keyplane.app.oidc import _max_age

from .helpers import bundle_dict
from .oidc_provider import CLIENT_ID, CLIENT_SECRET, FakeOidcProvider


@pytest.fixture
async def oidc_kp(provider: FakeOidcProvider, storage: Storage) -> AsyncIterator[Keyplane]:
    provider.reset()
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


@contextlib.asynccontextmanager
async def at_callback(kp: Keyplane) -> AsyncIterator[tuple[httpx.AsyncClient, str, dict[str, str]]]:
    """A browser that started a login and came back from the provider: (browser, callback path, params)."""
    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://app.example.com"
        ) as browser,
        httpx.AsyncClient() as net,
    ):
        r = await browser.get("/sso/oidc/corp/login", params={"next": "/home"})
        r = await net.get(r.headers["location"])
        callback = urlsplit(r.headers["location"])
        yield browser, callback.path, {k: v[0] for k, v in parse_qs(callback.query).items()}


@pytest.mark.parametrize(
    ("verified", "status"),
    [(True, 303), ("true", 303), ("True", 403), ("false", 403), (False, 403), ("yes", 403), (1, 403), (None, 403)],
)
async def test_only_true_counts_as_email_verified(
    oidc_kp: Keyplane, provider: FakeOidcProvider, verified: object, status: int
) -> None:
    provider.claims_override["email_verified"] = verified
    r = await login(oidc_kp)
    assert r.status_code == status, r.text
    if status == 403:
        assert "not verified" in r.text and "keyplane_session" not in r.cookies
        assert oidc_kp.refusals.count("oidc.email_not_verified") == 1


async def test_absent_email_verified_is_refused_unless_the_idp_opts_in(
    oidc_kp: Keyplane, provider: FakeOidcProvider
) -> None:
    provider.claims_removed.add("email_verified")
    r = await login(oidc_kp)
    assert r.status_code == 403, r.text
    assert "no email_verified claim" in r.text and "allowMissingEmailVerified" in r.text
    assert oidc_kp.refusals.count("oidc.email_verified_missing") == 1
    entra_like = Bundle.from_dict(_opted_in_bundle(oidc_kp))
    kp = Keyplane(BundleStore.from_bundle(entra_like), secret_key="s3cret")
    try:
        r = await login(kp)
        assert r.status_code == 303, r.text
    finally:
        await kp.aclose()


def _opted_in_bundle(kp: Keyplane) -> dict[str, Any]:
    idp = kp.bundle.identity_providers["corp"]
    document = bundle_dict()
    document["identityProviders"]["corp"] = {
        "protocol": "OIDC",
        "displayName": idp.display_name,
        "oidc": {**idp.oidc, "allowMissingEmailVerified": True},  # type: ignore[dict-item]
        "claimMapping": dict(idp.attribute_mapping),
    }
    document["domains"]["corp.example"] = {"identityProvider": "corp", "enforcement": "Required"}
    return document


@pytest.mark.parametrize(
    ("answer", "status", "shown"),
    [
        (Response("<html>Service Unavailable</html>", status_code=200, media_type="text/html"), 502, "not JSON"),
        (Response("<html>oops</html>", status_code=500, media_type="text/html"), 502, "answered 500"),
        (JSONResponse(["id_token"]), 502, "not a JSON object"),
        (JSONResponse({"access_token": "at"}), 502, "no id_token"),
        (JSONResponse({"error": "invalid_grant"}, status_code=400), 400, "invalid_grant"),
        (JSONResponse({"error": "invalid_client"}, status_code=401), 502, "clientSecretRef"),
        (JSONResponse({"error": "bad\r\nFAKE LOG LINE"}, status_code=400), 400, "unreadable error code"),
        (Response("Bad Request", status_code=400), 502, "answered 400"),
    ],
    ids=[
        "html-200",
        "html-500",
        "json-array",
        "no-id-token",
        "invalid-grant",
        "invalid-client",
        "hostile-error",
        "text-400",
    ],
)
async def test_token_endpoint_answers_give_a_clean_page_never_a_500(
    oidc_kp: Keyplane, provider: FakeOidcProvider, answer: Response, status: int, shown: str
) -> None:
    provider.token_answer = answer
    r = await login(oidc_kp)
    assert r.status_code == status, r.text
    assert shown in r.text and "keyplane_session" not in r.cookies
    assert "FAKE LOG LINE" not in r.text


async def test_a_replayed_callback_gets_400_without_reaching_the_token_endpoint(
    oidc_kp: Keyplane, provider: FakeOidcProvider
) -> None:
    async with at_callback(oidc_kp) as (browser, path, params):
        pending = browser.cookies.get("keyplane_oidc_corp")
        r = await browser.get(path, params=params)
        assert r.status_code == 303, r.text
        assert provider.token_requests == 1
        # The same callback again, with the login cookie put back (an attacker who captured both).
        browser.cookies.set("keyplane_oidc_corp", pending, domain="app.example.com", path="/sso/oidc/corp/")
        r = await browser.get(path, params=params)
        assert r.status_code == 400, r.text
        assert "replay" in r.text and "keyplane_session" not in r.cookies
        assert provider.token_requests == 1
        assert oidc_kp.refusals.count("oidc.replay") == 1


@pytest.mark.parametrize(
    "answer",
    [Response("<html>maintenance</html>", media_type="text/html"), JSONResponse({"keys": [{"kty": "nope"}]})],
    ids=["html", "bad-key"],
)
async def test_an_unusable_jwks_gives_502(oidc_kp: Keyplane, provider: FakeOidcProvider, answer: Response) -> None:
    provider.jwks_answer = answer
    r = await login(oidc_kp)
    assert r.status_code == 502, r.text
    assert "JWKS" in r.text and "keyplane_session" not in r.cookies


async def test_userinfo_about_another_subject_is_refused(oidc_kp: Keyplane, provider: FakeOidcProvider) -> None:
    """OIDC Core 5.3.2: userinfo claims count only when its sub is the ID token's."""
    provider.claims_removed.update({"email", "email_verified", "groups"})
    provider.userinfo_answer = {"sub": "someone-else", "email": "dana@corp.example", "email_verified": True}
    r = await login(oidc_kp)
    assert r.status_code == 502, r.text
    assert "sub mismatch" in r.text and "keyplane_session" not in r.cookies
    assert oidc_kp.refusals.count("oidc.userinfo_sub_mismatch") == 1
    provider.userinfo_answer = {"sub": "user-1", "email": "dana@corp.example", "email_verified": True}
    r = await login(oidc_kp)
    assert r.status_code == 303, r.text


async def test_the_id_tokens_email_verified_does_not_vouch_for_a_userinfo_email(
    oidc_kp: Keyplane, provider: FakeOidcProvider
) -> None:
    provider.claims_removed.add("email")
    provider.userinfo_answer = {"sub": "user-1", "email": "dana@corp.example"}
    r = await login(oidc_kp)
    assert r.status_code == 403, r.text
    assert "no email_verified claim" in r.text


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("", 3600), ("public, max-age=600", 600), ("max-age=5", 300), ("max-age=9999999", 86400), ("no-store", 300)],
)
def test_jwks_lifetime_follows_cache_control_within_bounds(header: str, seconds: float) -> None:
    assert _max_age(header) == seconds


async def test_the_jwks_is_kept_for_its_max_age_then_fetched_again(
    oidc_kp: Keyplane, provider: FakeOidcProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyplane.app.oidc as oidc_module

    now = [1000.0]
    monkeypatch.setattr(oidc_module, "_monotonic", lambda: now[0])
    provider.jwks_cache_control = "public, max-age=600"
    assert (await login(oidc_kp)).status_code == 303
    assert (await login(oidc_kp)).status_code == 303
    assert provider.jwks_requests == 1  # cached between logins
    now[0] += 599
    assert (await login(oidc_kp)).status_code == 303
    assert provider.jwks_requests == 1
    now[0] += 2
    assert (await login(oidc_kp)).status_code == 303
    assert provider.jwks_requests == 2  # past max-age: fetched again

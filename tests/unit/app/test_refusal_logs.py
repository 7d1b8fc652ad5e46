"""Every refusal is logged with its reason and counted; no token, cookie, code, ID token or assertion is logged.

The log is captured at DEBUG from every logger but httpx's own request lines (those are the test's
clients: the browser's callback URL carries the code and state by design of OAuth, and the app's own
httpx lines name only the token and JWKS URLs).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from keyplane.app import Bundle, BundleStore, Keyplane
from keyplane.app.audit import Refusals, printable

from .helpers import OKTA_TOKEN, bundle_dict
from .oidc_provider import CLIENT_SECRET, FakeOidcProvider
from .saml_idp import KeyPair, build_response, make_keypair, saml_settings
from .test_oidc import at_callback
from .test_oidc import oidc_kp as oidc_kp
from .test_saml import post_acs, start_login

SCIM_JSON = "application/scim+json"


def app_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "keyplane.app.audit"]


@pytest.fixture(scope="module")
def idp_keys() -> KeyPair:
    return make_keypair("test-idp")


@pytest.fixture
async def saml_browser(idp_keys: KeyPair) -> AsyncIterator[tuple[Keyplane, httpx.AsyncClient]]:
    document = bundle_dict()
    document["identityProviders"]["okta"].update(saml=saml_settings(idp_keys), allowIdPInitiated=True)
    kp = Keyplane(BundleStore.from_bundle(Bundle.from_dict(document)), secret_key="s3cret")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://app.example.com"
    ) as browser:
        yield kp, browser


async def test_scim_refusals_are_logged_without_tokens_or_bodies(
    client: httpx.AsyncClient, keyplane: Keyplane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-0123456789abcdef"
    r = await client.post("/scim/v2/okta/Users", content=b"{}", headers={"authorization": f"Bearer {wrong}"})
    assert r.status_code == 401
    secret_body = '{"userName": "x@acme.com", "password": "hunter2-do-not-log", "x": ' + "[" * 100 + "]" * 100 + "}"
    good = {"authorization": f"Bearer {OKTA_TOKEN}", "content-type": SCIM_JSON}
    r = await client.post("/scim/v2/okta/Users", content=secret_body, headers=good)
    assert r.status_code == 400
    r = await client.post("/scim/v2/okta/Users", content=b" " * (3 * 1024 * 1024), headers=good)
    assert r.status_code == 413
    invalid = (
        '{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": ["x"], '
        '"password": "hunter2-do-not-log"}'
    )
    r = await client.post("/scim/v2/okta/Users", content=invalid, headers=good)
    assert r.status_code == 400, r.text
    lines = refusal_lines(caplog)
    assert any("scim.unauthorized" in line and "bearer token" in line and "(okta)" in line for line in lines)
    assert any("scim.invalidSyntax" in line and "deeper than 64" in line for line in lines)
    assert any("scim.body_too_large" in line and "max_body_size" in line for line in lines)
    assert keyplane.refusals.count("scim.unauthorized") == 1 and keyplane.refusals.count("scim.invalidSyntax") == 1
    assert keyplane.refusals.count("scim.body_too_large") == 1 and sum(keyplane.refusals.counts().values()) == 4
    log = app_log(caplog)
    for secret in (wrong, OKTA_TOKEN, "hunter2-do-not-log"):
        assert secret not in log


async def test_saml_refusals_are_logged_without_the_assertion_or_cookies(
    saml_browser: tuple[Keyplane, httpx.AsyncClient], idp_keys: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    kp, browser = saml_browser
    caplog.set_level(logging.DEBUG)
    posted: list[str] = []
    cookies: list[str] = []

    async def refused(response: str, code: str, solicited: bool = True) -> None:
        if solicited:
            cookies.append(browser.cookies["keyplane_saml_okta"])
        posted.append(response)
        r = await post_acs(browser, response)
        assert r.status_code == 403, r.text
        assert kp.refusals.count(code) >= 1, (code, kp.refusals.counts())

    await refused(build_response(idp_keys, in_response_to=await start_login(browser), algorithm="sha1"),
                  "saml.deprecated_algorithm")
    await refused(build_response(make_keypair("impostor"), in_response_to=await start_login(browser)),
                  "saml.signature")
    browser.cookies.clear()
    await refused(build_response(idp_keys, in_response_to="_another"), "saml.unsolicited_in_response_to", False)
    once = build_response(idp_keys, in_response_to=None)
    assert (await post_acs(browser, once)).status_code == 303
    browser.cookies.clear()
    await refused(once, "saml.replay", False)
    lines = refusal_lines(caplog)
    assert any("Deprecated signature algorithm" in line and "allowDeprecatedAlgorithms" in line for line in lines)
    assert any("InResponseTo" in line for line in lines) and any("replay" in line for line in lines)
    log = app_log(caplog)
    for response in posted:
        assert response[:40] not in log and response[-40:] not in log
        assert base64.b64decode(response).decode()[:200] not in log
    assert "<saml:Assertion" not in log and "Assertion ID" not in log
    for cookie in cookies:
        assert cookie not in log
    session = browser.cookies.get("keyplane_session")
    assert session is None or session not in log


async def test_oidc_refusals_are_logged_without_code_state_or_tokens(
    oidc_kp: Keyplane,
    provider: FakeOidcProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = [CLIENT_SECRET]
    provider.claims_override["email_verified"] = "false"
    async with at_callback(oidc_kp) as (browser, path, params):
        seen += [params["code"], params["state"], browser.cookies["keyplane_oidc_corp"]]
        assert (await browser.get(path, params=params)).status_code == 403
        assert (await browser.get(path, params=params)).status_code == 400  # the replay
    provider.claims_override.clear()
    async with at_callback(oidc_kp) as (browser, path, params):
        seen += [params["code"], params["state"]]
        r = await browser.get(path, params={"state": params["state"], "error": "access_denied\nFAKE"})
        assert r.status_code == 403
    lines = refusal_lines(caplog)
    assert any("oidc.email_not_verified" in line and "not verified" in line for line in lines)
    assert any("oidc.replay" in line for line in lines)
    assert any("oidc.idp_error" in line and "unreadable error code" in line for line in lines)
    assert all("\n" not in line for line in lines)
    log = app_log(caplog)
    for secret in seen:
        assert secret not in log
    assert "eyJ" not in log  # no JWT (ID token) in the log


def test_refusals_counter_and_listener() -> None:
    refusals = Refusals()
    heard: list[tuple[str, str]] = []
    refusals.on_refusal(lambda code, source: heard.append((code, source)))

    def broken(code: str, source: str) -> None:
        raise RuntimeError("exporter bug")

    refusals.on_refusal(broken)
    refusals.refuse("scim.unauthorized", "no token", source="okta")
    refusals.refuse("scim.unauthorized", "no token", source="okta")
    assert refusals.count("scim.unauthorized") == 2 and refusals.count("other") == 0
    assert heard == [("scim.unauthorized", "okta")] * 2
    assert printable("a\nb\x00c" + "x" * 400).startswith("a\\nb\\x00c") and len(printable("x" * 400)) == 301

from __future__ import annotations

import base64
import datetime
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from lxml import etree

from keyplane.app import Bundle, BundleStore, Keyplane, Storage

from .helpers import bundle_dict
from .saml_idp import IDP_SSO, KeyPair, build_response, make_keypair, request_id_of, saml_settings

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.fixture(scope="module")
def idp_keys() -> KeyPair:
    return make_keypair("test-idp")


@pytest.fixture(scope="module")
def other_keys() -> KeyPair:
    return make_keypair("impostor")


@pytest.fixture
def saml_kp(idp_keys: KeyPair, storage: Storage) -> Keyplane:
    """The app on each database (SQLite, PostgreSQL): login state and replay store live there."""
    document = bundle_dict()
    document["identityProviders"]["okta"]["saml"] = saml_settings(idp_keys)
    return Keyplane(BundleStore.from_bundle(Bundle.from_dict(document)), secret_key="s3cret", storage=storage)


@pytest.fixture
async def browser(saml_kp: Keyplane) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=saml_kp.asgi()), base_url="https://app.example.com"
    ) as client:
        yield client


async def start_login(browser: httpx.AsyncClient, email: str = "alice@acme.com") -> str:
    r = await browser.get("/sso/saml/okta/login", params={"email": email, "next": "/dashboard"})
    assert r.status_code == 302
    assert r.headers["location"].startswith(IDP_SSO + "?SAMLRequest=")
    return request_id_of(r.headers["location"])


async def post_acs(browser: httpx.AsyncClient, response: str, relay: str = "/dashboard") -> httpx.Response:
    return await browser.post("/sso/saml/okta/acs", data={"SAMLResponse": response, "RelayState": relay})


def _assertion_id(response: str) -> str:
    root = etree.fromstring(base64.b64decode(response))
    return str(root.find("{urn:oasis:names:tc:SAML:2.0:assertion}Assertion").get("ID"))


def session_of(kp: Keyplane, response: httpx.Response) -> dict[str, Any] | None:
    cookie = response.cookies.get("keyplane_session")
    if cookie is None:
        return None
    return kp._signer.loads(cookie, salt="keyplane.session")  # type: ignore[no-any-return]


async def test_round_trip_gives_the_bound_role(
    browser: httpx.AsyncClient, saml_kp: Keyplane, idp_keys: KeyPair
) -> None:
    request_id = await start_login(browser)
    pending_cookie = browser.cookies.get("keyplane_saml_okta")
    response = build_response(idp_keys, in_response_to=request_id, groups=("platform-admins", "other"))
    r = await post_acs(browser, response)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/dashboard"
    session = session_of(saml_kp, r)
    assert session is not None
    assert session["email"] == "alice@acme.com" and session["role"] == "Admin"
    assert session["identityProvider"] == "okta" and not session["provisioned"]
    # Replaying the same Response with the same browser state is refused: the login it answered is
    # finished (its pending state was taken), and the assertion ID is in the replay store.
    browser.cookies.set(
        "keyplane_saml_okta", pending_cookie, domain="app.example.com", path="/sso/saml/okta/"
    )
    r = await post_acs(browser, response)
    assert r.status_code == 403 and "unsolicited" in r.text, r.text
    assert not saml_kp.replay.remember(f"saml:okta:{_assertion_id(response)}", None)
    # With a new login in progress, the old Response does not answer its request.
    await start_login(browser)
    r = await post_acs(browser, response)
    assert r.status_code == 403 and "InResponseTo" in r.text


async def test_provisioned_user_gets_scim_role(
    browser: httpx.AsyncClient, saml_kp: Keyplane, idp_keys: KeyPair
) -> None:
    storage = saml_kp.scim.storage_for("okta")
    rt = saml_kp.scim.provider.resource_types[0]
    model = saml_kp.scim.provider.model_for(rt)
    with storage.operation():
        storage.create(
            rt,
            model.model_validate(
                {
                    "schemas": [USER],
                    "userName": "bob@acme.com",
                    "emails": [{"value": "bob@acme.com", "primary": True}],
                }
            ),
        )
    request_id = await start_login(browser, "bob@acme.com")
    # The assertion's groups do not matter for a provisioned user: SCIM is the source of truth.
    r = await post_acs(
        browser,
        build_response(
            idp_keys, in_response_to=request_id, email="bob@acme.com", groups=("platform-admins",)
        ),
    )
    assert r.status_code == 303, r.text
    assert session_of(saml_kp, r)["role"] == "Viewer"  # type: ignore[index]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong_audience", "audience"),
        ("expired", "expired"),
        ("unsigned", "not signed"),
        ("wrong_certificate", "signature"),
        ("other_request", "InResponseTo"),
        ("unsolicited", "unsolicited"),
        ("foreign_domain", "contoso.com belongs to identity provider entra"),
    ],
)
async def test_refused_assertions(
    case: str,
    reason: str,
    browser: httpx.AsyncClient,
    saml_kp: Keyplane,
    idp_keys: KeyPair,
    other_keys: KeyPair,
) -> None:
    request_id = await start_login(browser)
    kwargs: dict[str, Any] = {"in_response_to": request_id}
    signer = idp_keys
    if case == "wrong_audience":
        kwargs["audience"] = "https://other-sp.example.com"
    elif case == "expired":
        kwargs["issued"] = -datetime.timedelta(hours=1)
    elif case == "unsigned":
        signer = None  # type: ignore[assignment]
    elif case == "wrong_certificate":
        signer = other_keys
    elif case == "other_request":
        kwargs["in_response_to"] = "_someone_elses_request"
    elif case == "unsolicited":
        browser.cookies.clear()
        kwargs["in_response_to"] = None
    elif case == "foreign_domain":
        kwargs["email"] = "mallory@contoso.com"
    r = await post_acs(browser, build_response(signer, **kwargs))
    assert r.status_code == 403, (case, r.text)
    assert reason.lower() in r.text.lower(), (case, r.text)
    assert "keyplane_session" not in r.cookies


async def test_sp_metadata(browser: httpx.AsyncClient) -> None:
    r = await browser.get("/sso/saml/okta/metadata")
    assert r.status_code == 200
    root = etree.fromstring(r.content)
    assert root.get("entityID") == "https://app.example.com/sso/saml/okta"
    # The document an IdP stores must not expire by itself (python3-saml's default is now + 2 days).
    assert root.get("validUntil") is None and root.get("cacheDuration") == "PT24H"
    assert (await browser.get("/sso/saml/nope/metadata")).status_code == 404
    route = (await browser.get("/sso/route", params={"email": "x@acme.com"})).json()
    assert route["identityProvider"] == "okta" and route["localLoginAllowed"] is False


def _keyplane(idp_keys: KeyPair, *, security: dict[str, Any] | None = None, **idp: Any) -> Keyplane:
    document = bundle_dict()
    settings = saml_settings(idp_keys)
    settings["security"].update(security or {})  # type: ignore[attr-defined]
    document["identityProviders"]["okta"].update(saml=settings, **idp)
    return Keyplane(BundleStore.from_bundle(Bundle.from_dict(document)), secret_key="s3cret")


@pytest.mark.parametrize(("algorithm", "refused"), [("sha1", "signature"), ("sha1-digest", "digest")])
async def test_sha1_signatures_and_digests_are_refused_by_default(
    browser: httpx.AsyncClient, saml_kp: Keyplane, idp_keys: KeyPair, algorithm: str, refused: str
) -> None:
    # The bundle of saml_kp has no rejectDeprecatedAlgorithm at all: the app defaults to refusing.
    assert "rejectDeprecatedAlgorithm" not in saml_kp.bundle.identity_providers["okta"].saml["security"]  # type: ignore[index]
    request_id = await start_login(browser)
    r = await post_acs(browser, build_response(idp_keys, in_response_to=request_id, algorithm=algorithm))
    assert r.status_code == 403, r.text
    assert f"Deprecated {refused} algorithm" in r.text
    assert "allowDeprecatedAlgorithms" in r.text  # the setting that would change it
    assert "keyplane_session" not in r.cookies
    assert saml_kp.refusals.count("saml.deprecated_algorithm") == 1


async def test_sha1_is_accepted_for_an_idp_that_opts_out(idp_keys: KeyPair) -> None:
    kp = _keyplane(idp_keys, security={"rejectDeprecatedAlgorithm": False})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://app.example.com"
    ) as browser:
        request_id = await start_login(browser)
        r = await post_acs(browser, build_response(idp_keys, in_response_to=request_id, algorithm="sha1"))
        assert r.status_code == 303, r.text
        assert session_of(kp, r)["email"] == "alice@acme.com"  # type: ignore[index]


async def test_unsolicited_response_naming_a_request_is_refused_even_with_idp_initiated_on(
    idp_keys: KeyPair,
) -> None:
    kp = _keyplane(idp_keys, allowIdPInitiated=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://app.example.com"
    ) as browser:
        # Another browser's SP-initiated login answer, posted where no login is pending.
        r = await post_acs(browser, build_response(idp_keys, in_response_to="_another_browsers_request"))
        assert r.status_code == 403, r.text
        assert "InResponseTo" in r.text and "keyplane_session" not in r.cookies
        # The same with the (unsigned) Response's InResponseTo stripped: the signed assertion still names it.
        stripped = etree.fromstring(base64.b64decode(build_response(idp_keys, in_response_to="_another_one")))
        del stripped.attrib["InResponseTo"]
        r = await post_acs(browser, base64.b64encode(etree.tostring(stripped)).decode())
        assert r.status_code == 403 and "InResponseTo" in r.text, r.text
        # A true IdP-initiated response (no InResponseTo) is accepted: the setting still works.
        assert kp.refusals.count("saml.unsolicited_in_response_to") == 2
        r = await post_acs(browser, build_response(idp_keys, in_response_to=None))
        assert r.status_code == 303, r.text


async def test_saml_post_body_is_capped(idp_keys: KeyPair) -> None:
    kp = _keyplane(idp_keys)
    kp.max_body_size = 64 * 1024
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://app.example.com"
    ) as browser:
        big = build_response(idp_keys, in_response_to=None, groups=tuple(f"group-{i}" for i in range(5000)))
        assert len(big) > kp.max_body_size
        r = await post_acs(browser, big)
        assert r.status_code == 413 and "max_body_size" in r.text, r.text
        sent = 0

        async def chunked() -> AsyncIterator[bytes]:
            nonlocal sent
            yield b"SAMLResponse="
            for _ in range(1000):  # 64 MiB if it were read whole
                sent += 1
                yield b"A" * 65536

        r = await browser.post(
            "/sso/saml/okta/acs",
            content=chunked(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 413, r.text
        assert sent <= 2  # cut off at the cap while reading, not read whole first
        assert kp.refusals.count("http.body_too_large") == 2

"""The app on a bundle the operator wrote: `keyplane render` of the shipped examples, then keyplane.app.

Every other app test builds its bundle by hand; these render `examples/quickstart` (SAML + SCIM) and
`examples/keycloak-oidc` (OIDC) with the real render code, load the rendered Secret's `identity.json`
from a file as a deployment mounts it, log in, and provision through the SCIM endpoint with the token
from the rendered token Secret. The IdPs' keys are made at test time: the examples' certificates are
replaced by test ones (the examples ship no private keys).
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from keyplane.app import BundleStore, Keyplane
from keyplane.render import read_documents, render
from keyplane.settings import Settings

from .oidc_provider import CLIENT_ID, CLIENT_SECRET, FakeOidcProvider
from .saml_idp import KeyPair, build_response, make_keypair, request_id_of

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
BASE = "https://platform.example.com"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
NOW = datetime.datetime.now(datetime.UTC)


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _secret_value(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


async def _rendered_app(docs: list[dict[str, Any]], settings: Settings, tmp_path: Path, *, offline: bool
                        ) -> tuple[Keyplane, list[dict[str, Any]]]:
    result = await render(docs, settings, NOW, offline=offline)
    assert result.all_ready, [(b["metadata"]["name"], b.get("status")) for b in result.inputs]
    bundle = _named(result.outputs, "Secret", settings.bundle_secret_name)
    path = tmp_path / "identity.json"  # as the deployment mounts it
    path.write_text(_secret_value(bundle, "identity.json"))
    return Keyplane(BundleStore(path, required=True), secret_key="contract-test"), result.outputs


async def _provision(browser: httpx.AsyncClient, endpoint: str, token: str, email: str) -> None:
    user = {"schemas": [USER], "userName": email, "emails": [{"value": email, "primary": True}], "active": True}
    refused = await browser.post(f"{endpoint}/Users", json=user, headers={"Authorization": "Bearer not-the-token"})
    assert refused.status_code == 401
    created = await browser.post(f"{endpoint}/Users", json=user, headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 201, created.text
    listed = await browser.get(f"{endpoint}/Users", headers={"Authorization": f"Bearer {token}"})
    assert [u["userName"] for u in listed.json()["Resources"]] == [email]


# --- SAML + SCIM: examples/quickstart -----------------------------------------------------------------

@pytest.fixture(scope="module")
def idp_keys() -> KeyPair:
    return make_keypair("quickstart-idp")


def _quickstart_with(keys: KeyPair) -> list[dict[str, Any]]:
    docs = read_documents([str(EXAMPLES / "quickstart")])
    okta = _named(docs, "IdentityProvider", "okta")
    inline = okta["spec"]["saml"]["metadata"]["inline"]
    okta["spec"]["saml"]["metadata"]["inline"] = re.sub(
        r"<ds:X509Certificate>[^<]+</ds:X509Certificate>", f"<ds:X509Certificate>{keys.cert_body}</ds:X509Certificate>",
        inline,
    )
    return docs


@pytest.fixture
async def quickstart(idp_keys: KeyPair, tmp_path: Path) -> AsyncIterator[tuple[Keyplane, list[dict[str, Any]]]]:
    kp, outputs = await _rendered_app(_quickstart_with(idp_keys), Settings(), tmp_path, offline=True)
    yield kp, outputs
    await kp.aclose()


async def test_quickstart_saml_login_and_scim(
    quickstart: tuple[Keyplane, list[dict[str, Any]]], idp_keys: KeyPair
) -> None:
    kp, outputs = quickstart
    transport = httpx.ASGITransport(app=kp.asgi())
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as browser:
        route = (await browser.get("/sso/route", params={"email": "alice@acme.com"})).json()
        assert route["identityProvider"] == "okta" and route["localLoginAllowed"] is False

        r = await browser.get("/sso/saml/okta/login", params={"email": "alice@acme.com", "next": "/home"})
        assert r.status_code == 302, r.text
        assert "Signature=" in r.headers["location"]  # signAuthnRequests: the rendered SP key signs
        response = build_response(
            idp_keys, in_response_to=request_id_of(r.headers["location"]), email="alice@acme.com",
            groups=("platform-admins",), issuer="http://www.okta.com/exkDEMO1234567890",
            audience=f"{BASE}/sso/saml/okta", acs=f"{BASE}/sso/saml/okta/acs",
        )
        r = await browser.post("/sso/saml/okta/acs", data={"SAMLResponse": response, "RelayState": "/home"})
        assert r.status_code == 303, r.text
        session = kp._signer.loads(r.cookies["keyplane_session"], salt="keyplane.session")
        assert session["email"] == "alice@acme.com" and session["role"] == "Admin"

        token = _secret_value(_named(outputs, "Secret", "okta-scim-token"), "token")
        await _provision(browser, "/scim/v2/okta", token, "bob@acme.com")


async def test_app_serves_the_sp_metadata_the_operator_writes(
    quickstart: tuple[Keyplane, list[dict[str, Any]]],
) -> None:
    """One SP metadata document: the operator's ConfigMap and the app's endpoint, byte for byte."""
    kp, outputs = quickstart
    transport = httpx.ASGITransport(app=kp.asgi())
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as browser:
        for idp in ("okta", "keycloak"):
            written = _named(outputs, "ConfigMap", f"{idp}-sp-metadata")["data"]["metadata.xml"]
            served = await browser.get(f"/sso/saml/{idp}/metadata")
            assert served.status_code == 200
            assert served.text == written
            assert "validUntil" not in written and 'cacheDuration="PT24H"' in written


# --- OIDC: examples/keycloak-oidc ----------------------------------------------------------------------

def _keycloak_with(provider: FakeOidcProvider) -> list[dict[str, Any]]:
    docs = read_documents([str(EXAMPLES / "keycloak-oidc")])
    keycloak = _named(docs, "IdentityProvider", "keycloak")
    keycloak["spec"]["oidc"].update(issuer=provider.issuer, clientID=CLIENT_ID)
    keycloak["spec"]["serviceProvider"] = {"baseURL": BASE}
    secret_ref = keycloak["spec"]["oidc"]["clientSecretRef"]
    client_secret = {"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": secret_ref["name"], "namespace": "platform"},
                     "stringData": {secret_ref["key"]: CLIENT_SECRET}}
    scim = {"apiVersion": "keyplane.dev/v1alpha1", "kind": "ScimConnection",
            "metadata": {"name": "keycloak", "namespace": "platform"},
            "spec": {"identityProviderRef": {"name": "keycloak"}, "groupBindings": [
                {"group": "platform-admins", "role": "Admin"}]}}
    return [*docs, client_secret, scim]


async def test_keycloak_oidc_login_and_scim(provider: FakeOidcProvider, tmp_path: Path) -> None:
    # The test provider is plain http on 127.0.0.1: the two settings that allow exactly that.
    settings = Settings(allow_insecure_http=True, allow_private_networks=True)
    provider.email, provider.groups = "dana@acme.dev", ["platform-admins"]
    kp, outputs = await _rendered_app(_keycloak_with(provider), settings, tmp_path, offline=False)
    try:
        transport = httpx.ASGITransport(app=kp.asgi())
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as browser, httpx.AsyncClient() as net:
            r = await browser.get("/sso/oidc/keycloak/login", params={"email": "dana@acme.dev", "next": "/home"})
            assert r.status_code == 302, r.text
            assert parse_qs(urlsplit(r.headers["location"]).query)["redirect_uri"] == [
                f"{BASE}/sso/oidc/keycloak/callback"]
            r = await net.get(r.headers["location"])  # the browser at the provider
            callback = urlsplit(r.headers["location"])
            r = await browser.get(callback.path, params={k: v[0] for k, v in parse_qs(callback.query).items()})
            assert r.status_code == 303, r.text
            session = kp._signer.loads(r.cookies["keyplane_session"], salt="keyplane.session")
            assert session["email"] == "dana@acme.dev" and session["role"] == "Admin"

            token = _secret_value(_named(outputs, "Secret", "keycloak-scim-token"), "token")
            await _provision(browser, "/scim/v2/keycloak", token, "erin@acme.dev")
    finally:
        await kp.aclose()

"""App-side metrics, scraped from the route `Keyplane.wrap` serves and read with prometheus-client's parser:
logins by IdP, protocol and result (real python3-saml), SCIM requests by connection, method and status,
SCIM latency, replay refusals. Opt-in: without `metrics=` the route does not exist."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from keyplane.app import AppMetrics, Bundle, BundleStore, Keyplane

from .helpers import OKTA_TOKEN, bundle_dict
from .saml_idp import KeyPair, build_response, make_keypair, request_id_of, saml_settings


@pytest.fixture(scope="module")
def idp_keys() -> KeyPair:
    return make_keypair("metrics-idp")


def _keyplane(idp_keys: KeyPair, metrics: AppMetrics | None) -> Keyplane:
    document = bundle_dict()
    # IdP-initiated logins on: a response posted twice reaches the replay store (an SP-initiated one is
    # refused earlier, its pending login being used up).
    document["identityProviders"]["okta"].update(saml=saml_settings(idp_keys), allowIdPInitiated=True)
    return Keyplane(BundleStore.from_bundle(Bundle.from_dict(document)), secret_key="s3cret", metrics=metrics)


@pytest.fixture
async def browser(idp_keys: KeyPair) -> AsyncIterator[httpx.AsyncClient]:
    kp = _keyplane(idp_keys, AppMetrics())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kp.asgi()),
                                 base_url="https://app.example.com") as client:
        yield client


async def scrape(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    family = sample.removesuffix("_total").removesuffix("_count").removesuffix("_bucket")
    found = [s for s in families[family].samples
             if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (sample, labels, found)
    return float(found[0].value)


async def saml_login(browser: httpx.AsyncClient, keys: KeyPair, email: str = "alice@acme.com") -> tuple[str, int]:
    r = await browser.get("/sso/saml/okta/login", params={"email": email, "next": "/"})
    response = build_response(keys, in_response_to=request_id_of(r.headers["location"]), email=email)
    return response, await post_acs(browser, response)


async def post_acs(browser: httpx.AsyncClient, response: str) -> int:
    r = await browser.post("/sso/saml/okta/acs", data={"SAMLResponse": response, "RelayState": "/"})
    return r.status_code


async def test_logins_replays_and_scim_requests_are_counted(browser: httpx.AsyncClient, idp_keys: KeyPair) -> None:
    _, status = await saml_login(browser, idp_keys)
    assert status == 303
    # An IdP-initiated response, used twice: the second time is a replay.
    unsolicited = build_response(idp_keys, in_response_to=None)
    assert await post_acs(browser, unsolicited) == 303
    assert await post_acs(browser, unsolicited) == 403
    # A user of a domain okta does not own, and an IdP name that is not in the bundle.
    _, status = await saml_login(browser, idp_keys, "mallory@contoso.com")
    assert status == 403
    assert (await browser.get("/sso/saml/no-such-idp-x@y/login")).status_code == 404

    bearer = {"Authorization": f"Bearer {OKTA_TOKEN}"}
    assert (await browser.get("/scim/v2/okta/Users", headers=bearer)).status_code == 200
    assert (await browser.get("/scim/v2/okta/Users")).status_code == 401
    created = await browser.post("/scim/v2/okta/Users", headers=bearer, json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bob@acme.com"})
    assert created.status_code == 201

    families = await scrape(browser)
    logins = "keyplane_app_logins_total"
    assert value(families, logins, identity_provider="okta", protocol="SAML", result="ok") == 2
    refused = [s for s in families["keyplane_app_logins"].samples
               if s.name == logins and s.labels["result"] != "ok"]
    # By refusal code (LoginError.code): the replay, the foreign domain, the IdP name no bundle has.
    assert {(s.labels["identity_provider"], s.labels["result"]): s.value for s in refused} == {
        ("okta", "saml.replay"): 1, ("okta", "login.domain_not_owned"): 1, ("(unknown)", "login.unknown_idp"): 1}
    assert value(families, "keyplane_app_replay_refusals_total", protocol="SAML") == 1

    scim = "keyplane_app_scim_requests_total"
    assert value(families, scim, connection="okta", method="GET", status="200") == 1
    assert value(families, scim, connection="okta", method="GET", status="401") == 1
    assert value(families, scim, connection="okta", method="POST", status="201") == 1
    assert value(families, "keyplane_app_scim_request_duration_seconds_count", connection="okta",
                 method="GET") == 2
    assert families["keyplane_app_scim_request_duration_seconds"].type == "histogram"
    # Every refusal by code, SCIM's included (keyplane.app.audit's counter, exported).
    refusals = {s.labels["code"]: s.value for s in families["keyplane_app_refusals"].samples
                if s.name == "keyplane_app_refusals_total"}
    assert refusals == {"saml.replay": 1, "login.domain_not_owned": 1, "login.unknown_idp": 1, "scim.unauthorized": 1}
    # Bounded labels: never an email, a token or a path from the URL.
    for family in families.values():
        for sample in family.samples:
            assert not any("@" in v or OKTA_TOKEN in v or "/" in v for v in sample.labels.values()), sample


async def test_metrics_are_opt_in(idp_keys: KeyPair) -> None:
    kp = _keyplane(idp_keys, None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://a.test") as c:
        assert (await c.get("/metrics")).status_code == 404


async def test_series_can_join_the_apps_own_registry(idp_keys: KeyPair) -> None:
    """`AppMetrics(registry=..., path=None)`: the app's existing exporter shows Keyplane's series; no route."""
    registry = CollectorRegistry()
    Counter("my_app_requests", "The app's own counter.", registry=registry).inc()
    kp = _keyplane(idp_keys, AppMetrics(registry, path=None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://a.test") as c:
        assert (await c.get("/metrics")).status_code == 404
        assert (await c.get("/scim/v2/okta/Users")).status_code == 401
    text = generate_latest(registry).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"my_app_requests", "keyplane_app_scim_requests", "keyplane_app_logins"} <= names
    assert 'keyplane_app_scim_requests_total{connection="okta",method="GET",status="401"} 1.0' in text

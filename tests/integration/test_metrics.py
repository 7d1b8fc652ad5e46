"""The operator's metrics endpoint, scraped over HTTP and read with prometheus-client's own parser, and
the steady state of refreshing metadata URLs: freshness goes to metrics, nothing is written."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from .builders import API, NS, certificate_b64, idp_metadata, is_ready, namespace, saml_idp, scim, sso_domain

METRICS = "http://127.0.0.1:0/metrics"
# Label names the operator may use: bounded by the objects and small enumerations, never a URL or email.
ALLOWED_LABELS = {"kind", "namespace", "name", "sha256", "result", "verified", "state", "verb", "code",
                  "operation", "reason", "version", "le"}


async def scrape(runtime: Any) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(runtime.metrics.url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def samples(families: dict[str, Any], family: str, **labels: str) -> list[Sample]:
    return [s for s in families[family].samples if all(s.labels.get(k) == v for k, v in labels.items())]


def value(families: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    found = [s for s in samples(families, family, **labels) if sample is None or s.name == sample]
    assert len(found) == 1, f"{family}{labels}: {found}"
    return float(found[0].value)


def all_samples(families: dict[str, Any]) -> Iterable[Sample]:
    for family in families.values():
        yield from family.samples


async def _ready(cluster: Any, kind: str, name: str) -> bool:
    return is_ready(await cluster.get(API, kind, NS, name))


async def test_metrics_endpoint_exports_every_objects_state(
    cluster: Any, keyplane_operator: Any, idp_server: Any
) -> None:
    cert = certificate_b64()
    idp_server.put("/metadata", idp_metadata(certs=(cert,)))
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta", url=f"{idp_server.url}/metadata", refresh="1s"))
    await cluster.apply(saml_idp("broken", url=f"{idp_server.url}/missing", refresh="1h"))
    await cluster.apply(sso_domain("acme", ["acme.com", "acme.io"], "okta"))
    await cluster.apply(scim("okta", idp="okta", token={"rotationInterval": "720h", "overlap": "1h"}))
    async with keyplane_operator(metrics_endpoint=METRICS) as runtime:
        for kind, name in (("IdentityProvider", "okta"), ("SSODomain", "acme"), ("ScimConnection", "okta")):
            await cluster.wait_for(lambda k=kind, n=name: _ready(cluster, k, n), timeout=15)
        await cluster.wait_for(lambda: idp_server.count("/metadata") >= 3, timeout=15)  # refreshes: 304s
        families = await scrape(runtime)

        types = {name: family.type for name, family in families.items() if name.startswith("keyplane_")}
        assert types == {
            "keyplane_build_info": "gauge",
            "keyplane_api_requests": "counter",
            "keyplane_bundle_writes": "counter",
            "keyplane_namespace_reconcile_duration_seconds": "histogram",
            "keyplane_watch_restarts": "counter",
            "keyplane_objects": "gauge",
            "keyplane_object_ready": "gauge",
            "keyplane_object_stalled": "gauge",
            "keyplane_identityprovider_certificate_not_after_timestamp_seconds": "gauge",
            "keyplane_identityprovider_metadata_last_success_timestamp_seconds": "gauge",
            "keyplane_identityprovider_metadata_refresh_interval_seconds": "gauge",
            "keyplane_identityprovider_metadata_fetches": "counter",
            "keyplane_scimconnection_token_issued_timestamp_seconds": "gauge",
            "keyplane_scimconnection_token_rotation_timestamp_seconds": "gauge",
            "keyplane_scimconnection_previous_token_expiry_timestamp_seconds": "gauge",
            "keyplane_ssodomain_domains": "gauge",
            "keyplane_bundle_bytes": "gauge",
        }
        for sample in all_samples({k: v for k, v in families.items() if k.startswith("keyplane_")}):
            assert set(sample.labels) <= ALLOWED_LABELS, sample
            assert not any("://" in v or "@" in v for v in sample.labels.values()), sample

        # The IdP certificate: one series, labelled by its SHA-256 prefix, valued at its notAfter.
        parsed = x509.load_der_x509_certificate(base64.b64decode(cert))
        prefix = hashlib.sha256(base64.b64decode(cert)).hexdigest()[:16]
        certs = samples(families, "keyplane_identityprovider_certificate_not_after_timestamp_seconds", name="okta")
        assert [(s.labels["sha256"], s.value) for s in certs] == [(prefix, parsed.not_valid_after_utc.timestamp())]

        # Freshness and fetch results of the URL: the first read a 200, the refreshes 304s.
        now = datetime.now().timestamp()
        last = value(families, "keyplane_identityprovider_metadata_last_success_timestamp_seconds", name="okta")
        assert now - 10 < last <= now
        assert value(families, "keyplane_identityprovider_metadata_refresh_interval_seconds", name="okta") == 1.0
        assert value(families, "keyplane_identityprovider_metadata_refresh_interval_seconds", name="broken") == 3600
        fetches = "keyplane_identityprovider_metadata_fetches"
        assert value(families, fetches, f"{fetches}_total", name="okta", result="ok") == 1
        assert value(families, fetches, f"{fetches}_total", name="okta", result="not_modified") >= 2
        assert value(families, fetches, f"{fetches}_total", name="broken", result="MetadataHTTPError") >= 1
        assert not samples(families, "keyplane_identityprovider_metadata_last_success_timestamp_seconds",
                           name="broken")

        # Ready / Stalled per object and by kind.
        ready = "keyplane_object_ready"
        assert value(families, ready, kind="IdentityProvider", name="okta") == 1
        assert value(families, ready, kind="IdentityProvider", name="broken") == 0
        assert value(families, ready, kind="SSODomain", name="acme") == 1
        assert value(families, ready, kind="ScimConnection", name="okta") == 1
        assert value(families, "keyplane_objects", kind="IdentityProvider", state="Ready") == 1
        assert value(families, "keyplane_objects", kind="IdentityProvider", state="Reconciling") == 1
        assert value(families, "keyplane_objects", kind="SSODomain", state="Stalled") == 0
        assert value(families, "keyplane_ssodomain_domains", name="acme", verified="true") == 2
        assert value(families, "keyplane_ssodomain_domains", name="acme", verified="false") == 0

        # The SCIM token's times match its status; rotation is issued-at + rotationInterval.
        status = (await cluster.get(API, "ScimConnection", NS, "okta"))["status"]
        issued = datetime.fromisoformat(status["tokenIssuedAt"].replace("Z", "+00:00"))
        assert value(families, "keyplane_scimconnection_token_issued_timestamp_seconds", name="okta") == \
            issued.timestamp()
        assert value(families, "keyplane_scimconnection_token_rotation_timestamp_seconds", name="okta") == \
            (issued + timedelta(hours=720)).timestamp()
        assert not samples(families, "keyplane_scimconnection_previous_token_expiry_timestamp_seconds")

        # Operator series: the bundle was created, status patches answered 200, flushes were timed.
        assert value(families, "keyplane_bundle_writes", "keyplane_bundle_writes_total", operation="create") == 1
        secret = await cluster.get("v1", "Secret", NS, "keyplane-identity")
        assert value(families, "keyplane_bundle_bytes", namespace=NS) == \
            len(base64.b64decode(secret["data"]["identity.json"]))
        assert value(families, "keyplane_api_requests", "keyplane_api_requests_total", verb="patch",
                     code="200") >= 3
        assert value(families, "keyplane_namespace_reconcile_duration_seconds",
                     "keyplane_namespace_reconcile_duration_seconds_count") >= 1

        # A deleted object leaves no series behind.
        await cluster.delete(API, "ScimConnection", NS, "okta")

        async def forgotten() -> bool:
            after = await scrape(runtime)
            return not samples(after, "keyplane_scimconnection_token_issued_timestamp_seconds") and not samples(
                after, "keyplane_object_ready", kind="ScimConnection")

        await cluster.wait_for(forgotten, timeout=10)


@pytest.mark.parametrize("etags", [True, False], ids=["304", "200-same-bytes"])
async def test_refreshing_metadata_urls_write_nothing(
    cluster: Any, keyplane_operator: Any, idp_server: Any, etags: bool
) -> None:
    """Several refreshes of an unchanged document (a 304, or a 200 with the same bytes): zero modifying
    requests; the refreshes show up in the metrics instead."""
    idp_server.etags = etags
    idp_server.put("/metadata", idp_metadata())
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta", url=f"{idp_server.url}/metadata", refresh="1s"))
    async with keyplane_operator(metrics_endpoint=METRICS) as runtime:
        await cluster.wait_for(lambda: _ready(cluster, "IdentityProvider", "okta"), timeout=15)
        # Settled once two more refreshes went by: the writes that made it Ready (status, bundle, SP
        # metadata, Kopf's annotations) are behind us, and every later write would be a refresh's.
        settled = idp_server.count("/metadata") + 2
        await cluster.wait_for(lambda: idp_server.count("/metadata") >= settled, timeout=10)
        cluster.mark()
        start = idp_server.count("/metadata")
        await cluster.wait_for(lambda: idp_server.count("/metadata") >= start + 5, timeout=20)
        assert cluster.writes_since_mark() == []
        families = await scrape(runtime)
        fetches = "keyplane_identityprovider_metadata_fetches"
        unchanged = "not_modified" if etags else "ok"
        assert value(families, fetches, f"{fetches}_total", name="okta", result=unchanged) >= 5


async def test_quickstart_metrics_show_every_object_and_no_secret(cluster: Any, keyplane_operator: Any) -> None:
    """What `curl` on the metrics port shows for examples/quickstart: each object Ready, each IdP certificate,
    the SCIM token's times; and nothing secret or personal (the token, an email address)."""
    from .test_quickstart import NS as DEMO
    from .test_quickstart import all_ready, apply_quickstart

    docs = await apply_quickstart(cluster)
    async with keyplane_operator(metrics_endpoint=METRICS) as runtime:
        await cluster.wait_for(lambda: all_ready(cluster, docs), timeout=20)
        async with httpx.AsyncClient() as client:
            text = (await client.get(runtime.metrics.url)).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        for doc in docs:
            labels = {"kind": doc["kind"], "namespace": DEMO, "name": doc["metadata"]["name"]}
            assert value(families, "keyplane_object_ready", **labels) == 1, labels
        certs = samples(families, "keyplane_identityprovider_certificate_not_after_timestamp_seconds")
        assert {s.labels["name"] for s in certs} == {"okta", "keycloak"}
        assert value(families, "keyplane_scimconnection_token_issued_timestamp_seconds", name="okta") > 0
        token = await cluster.get("v1", "Secret", DEMO, "okta-scim-token")
        assert base64.b64decode(token["data"]["token"]).decode() not in text
        assert "@" not in text


async def test_a_taken_metrics_port_stops_the_operator_with_a_clear_error(cluster: Any, keyplane_operator: Any) -> None:
    import socket

    import kopf
    from kopf._core.engines.activities import ActivityError  # Kopf does not export it

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        endpoint = f"http://127.0.0.1:{taken.getsockname()[1]}/metrics"
        with pytest.raises(ActivityError) as caught:
            async with keyplane_operator(metrics_endpoint=endpoint):
                pass
    cause = caught.value.__cause__
    assert isinstance(cause, kopf.PermanentError)
    assert "metricsEndpoint" in str(cause) and "address already in use" in str(cause)

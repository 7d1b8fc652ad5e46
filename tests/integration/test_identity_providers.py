"""IdentityProvider against the emulated API and a local IdP server: refresh, last-known-good,
rollover, expiry, aggregates, signed metadata, ConfigMaps, OIDC discovery, SP signing keys."""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

from .builders import (
    API,
    NS,
    bundle_of,
    certificate_b64,
    condition,
    decode,
    idp_metadata,
    is_ready,
    namespace,
    saml_idp,
)
from .idp_server import PUBLIC_IP, IdPServer, NatToLocal, discovery, public_name_resolver, test_tls

# The scenarios that fetch from a server run twice: against plain http on 127.0.0.1 with the two
# settings that allow it, and with the production defaults (https only, no private networks) against
# an HTTPS server whose certificate a CA made at test time signed. The production run reaches the local
# server only through the fetcher's seams (a resolver answering a global address for the IdP's name, a
# network backend NATing that address to 127.0.0.1, a TLS context trusting the test CA): scheme, address
# and certificate checks (chain, validity, hostname) run as in production.
PRODUCTION = "https-production-defaults"


@pytest.fixture(params=["http-private-networks-allowed", PRODUCTION])
async def idp_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[IdPServer]:
    nat = None
    if request.param != PRODUCTION:
        server = await IdPServer().start()
    else:
        server_tls, client_tls = test_tls()
        server = await IdPServer(tls=server_tls).start()
        nat = _production_seams(monkeypatch, server, client_tls)
    try:
        yield server
    finally:
        await server.stop()
    if nat is not None:  # the documents really came over the production path
        assert server.requests and set(nat.connected) == {PUBLIC_IP}


def _production_seams(monkeypatch: pytest.MonkeyPatch, server: IdPServer, client_tls: ssl.SSLContext) -> NatToLocal:
    """Give the operator's fetcher (built at the first metadata URL) the resolver, network and trust-anchor
    seams."""
    from keyplane.sources import fetcher

    nat = NatToLocal(server.port)
    seams = functools.partial(fetcher.MetadataFetcher, resolver=public_name_resolver,
                              network_backend=nat, ssl_context=client_tls)
    monkeypatch.setattr(fetcher, "MetadataFetcher", seams)
    return nat


async def test_production_defaults_verify_the_certificate_and_refuse_http(
    cluster: Any, keyplane_operator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same HTTPS server, but the operator trusts another CA; and an http:// URL: both refused."""
    server_tls, _ = test_tls()
    _other_server, other_client = test_tls()
    server = await IdPServer(tls=server_tls).start()
    try:
        server.put("/metadata", idp_metadata())
        nat = _production_seams(monkeypatch, server, other_client)
        await cluster.apply(namespace())
        await cluster.apply(saml_idp("okta", url=f"{server.url}/metadata"))
        await cluster.apply(saml_idp("plain", url=f"http://127.0.0.1:{server.port}/metadata"))
        async with keyplane_operator(allow_private_networks=False, allow_insecure_http=False):
            untrusted = condition(await _wait_condition(cluster, "MetadataResolved", "False"), "MetadataResolved")
            assert "TLS certificate of" in untrusted["message"] and "could not be verified" in untrusted["message"]
            assert nat.connected and set(nat.connected) == {PUBLIC_IP}  # the checked address, then TLS failed
            plain = await _wait_condition(cluster, "MetadataResolved", "False", name="plain")
            refused = condition(plain, "MetadataResolved")
            assert refused["reason"] == "MetadataURLForbidden" and "https" in refused["message"]
        assert server.count("/metadata") == 0  # no document was ever served
    finally:
        await server.stop()


@pytest.fixture
def keyplane_operator(keyplane_operator: Any, request: pytest.FixtureRequest) -> Any:
    """The operator; with the production defaults when the IdP server runs in the production mode."""
    if "idp_server" not in request.fixturenames or request.getfixturevalue("idp_server").tls is None:
        return keyplane_operator

    def production(**overrides: Any) -> Any:
        return keyplane_operator(**{"allow_private_networks": False, "allow_insecure_http": False, **overrides})

    return production


async def _idp(cluster: Any, name: str = "okta") -> dict[str, Any]:
    return dict(await cluster.get(API, "IdentityProvider", NS, name) or {})


async def _entry(cluster: Any, name: str = "okta") -> dict[str, Any] | None:
    secret = await cluster.get("v1", "Secret", NS, "keyplane-identity")
    return bundle_of(secret)["identityProviders"].get(name) if secret else None


async def _wait_condition(cluster: Any, type_: str, status: str, reason: str | None = None,
                          name: str = "okta", timeout: float = 15) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        obj = await _idp(cluster, name)
        cond = condition(obj, type_)
        if cond.get("status") == status and (reason is None or cond.get("reason") == reason):
            return obj
        return None

    return await cluster.wait_for(check, timeout=timeout)


async def test_url_refresh_uses_304_and_picks_up_changes(cluster: Any, keyplane_operator: Any, idp_server: Any) -> None:
    idp_server.put("/metadata", idp_metadata(sso_url="https://idp.test/sso-v1"))
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta", url=f"{idp_server.url}/metadata", refresh="1s"))
    async with keyplane_operator():
        await _wait_condition(cluster, "Ready", "True")
        await cluster.wait_for(lambda: idp_server.count("/metadata") >= 3, timeout=10)
        conditional = [etag for path, etag in idp_server.requests if path == "/metadata"][1:]
        assert all(conditional), "refreshes after the first are conditional GETs"
        idp_server.put("/metadata", idp_metadata(sso_url="https://idp.test/sso-v2"))

        async def changed() -> bool:
            entry = await _entry(cluster)
            return bool(entry) and entry["saml"]["idp"]["singleSignOnService"]["url"] == "https://idp.test/sso-v2"

        await cluster.wait_for(changed, timeout=10)

        async def announced() -> bool:
            events = await cluster.list("v1", "Event", NS)
            return any(e["reason"] == "IdentityProviderChanged" and "sso-v2" in e["message"] for e in events)

        await cluster.wait_for(announced, timeout=5)


async def test_idp_down_keeps_last_good_config_then_recovers(
    cluster: Any, keyplane_operator: Any, idp_server: Any
) -> None:
    idp_server.put("/metadata", idp_metadata())
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta", url=f"{idp_server.url}/metadata", refresh="1s"))
    async with keyplane_operator():
        await _wait_condition(cluster, "Ready", "True")
        await cluster.wait_for(lambda: _entry(cluster), timeout=10)
        good = await _entry(cluster)
        idp_server.put("/metadata", "down", status=503)
        obj = await _wait_condition(cluster, "MetadataResolved", "False", "MetadataHTTPError")
        assert condition(obj)["status"] == "True" and condition(obj)["reason"] == "LastKnownGood"
        assert await _entry(cluster) == good

        async def warned() -> bool:
            events = await cluster.list("v1", "Event", NS)
            return any(e["reason"] == "MetadataHTTPError" and e["type"] == "Warning" for e in events)

        await cluster.wait_for(warned, timeout=5)
        idp_server.put("/metadata", idp_metadata())
        obj = await _wait_condition(cluster, "MetadataResolved", "True")
        assert condition(obj)["reason"] == "Ready"


async def test_rollover_metadata_keeps_both_signing_certificates(cluster: Any, keyplane_operator: Any) -> None:
    old, new = certificate_b64("old signing"), certificate_b64("new signing", days=730)
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta", inline=idp_metadata(certs=(old, new))))
    async with keyplane_operator():
        obj = await _wait_condition(cluster, "Ready", "True")
        assert len(obj["status"]["identityProvider"]["certificates"]) == 2
        entry = await cluster.wait_for(lambda: _entry(cluster), timeout=10)
        assert len(entry["saml"]["idp"]["x509certMulti"]["signing"]) == 2


async def test_expired_certificate_is_not_ready(cluster: Any, keyplane_operator: Any) -> None:
    expired = certificate_b64("expired signing", days=10, offset_days=-30)
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta", inline=idp_metadata(certs=(expired,))))
    async with keyplane_operator():
        obj = await _wait_condition(cluster, "Stalled", "True")
        assert condition(obj, "CertificateValid")["reason"] == "Expired"
        assert condition(obj)["status"] == "False"


async def test_aggregate_needs_an_entity_id_and_selects_it(cluster: Any, keyplane_operator: Any) -> None:
    one = idp_metadata(entity_id="https://idp-one.test", sso_url="https://idp-one.test/sso")
    two = idp_metadata(entity_id="https://idp-two.test", sso_url="https://idp-two.test/sso")
    strip = lambda xml: xml.split("?>", 1)[1]  # noqa: E731
    aggregate = ('<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">'
                 f"{strip(one)}{strip(two)}</md:EntitiesDescriptor>")
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta", inline=aggregate))
    async with keyplane_operator():
        obj = await _wait_condition(cluster, "Stalled", "True")
        cond = condition(obj, "MetadataResolved")
        assert cond["reason"] == "EntitySelectionRequired"
        assert "https://idp-one.test" in cond["message"] and "https://idp-two.test" in cond["message"]
        fixed = saml_idp("okta", inline=aggregate)
        fixed["spec"]["saml"]["metadata"]["entityID"] = "https://idp-two.test"
        await cluster.apply(fixed)
        obj = await _wait_condition(cluster, "Ready", "True")
        assert obj["status"]["identityProvider"]["ssoURL"] == "https://idp-two.test/sso"


async def test_signed_metadata_fingerprint(cluster: Any, keyplane_operator: Any, tmp_path: Any) -> None:
    from .signing import signed_metadata

    document, fingerprint = signed_metadata()
    await cluster.apply(namespace())
    good = saml_idp("okta", inline=document)
    good["spec"]["saml"]["metadata"]["signingCertificateFingerprint"] = fingerprint
    wrong = saml_idp("other", inline=document)
    wrong["spec"]["saml"]["metadata"]["signingCertificateFingerprint"] = "sha256:" + ":".join(["AB"] * 32)
    await cluster.apply(good)
    await cluster.apply(wrong)
    async with keyplane_operator():
        await _wait_condition(cluster, "Ready", "True", name="okta")
        obj = await _wait_condition(cluster, "Stalled", "True", name="other")
        assert condition(obj, "MetadataResolved")["reason"] == "MetadataSignatureInvalid"


async def test_configmap_source_is_reread_when_the_configmap_changes(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    idp = saml_idp("okta")
    idp["spec"]["saml"]["metadata"] = {"configMapRef": {"name": "okta-metadata", "key": "metadata.xml"}}
    await cluster.apply(idp)
    async with keyplane_operator():
        obj = await _wait_condition(cluster, "Reconciling", "True", "ConfigMapNotFound")
        assert condition(obj)["status"] == "False"
        await cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "okta-metadata", "namespace": NS},
                             "data": {"metadata.xml": idp_metadata(sso_url="https://idp.test/cm-1")}})
        obj = await _wait_condition(cluster, "Ready", "True")
        assert obj["status"]["identityProvider"]["ssoURL"] == "https://idp.test/cm-1"
        await cluster.patch("v1", "ConfigMap", NS, "okta-metadata",
                            {"data": {"metadata.xml": idp_metadata(sso_url="https://idp.test/cm-2")}})

        async def reread() -> bool:
            return (await _idp(cluster))["status"]["identityProvider"]["ssoURL"] == "https://idp.test/cm-2"

        await cluster.wait_for(reread, timeout=10)


async def test_sp_signing_key_is_issued_and_survives_recreate(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta", sign=True))
    async with keyplane_operator():
        obj = await _wait_condition(cluster, "Ready", "True")
        assert obj["status"]["serviceProvider"]["signingCertificateSecretRef"] == {
            "name": "okta-sp-signing", "key": "tls.crt"}
        secret = await cluster.get("v1", "Secret", NS, "okta-sp-signing")
        assert secret["type"] == "kubernetes.io/tls"
        key = decode(secret, "tls.key")
        assert "PRIVATE KEY" in key and key not in json.dumps(obj)
        entry = await cluster.wait_for(lambda: _entry(cluster), timeout=10)
        assert entry["saml"]["security"]["authnRequestsSigned"] is True
        assert entry["saml"]["sp"]["privateKey"].strip() == key.strip()
        await cluster.delete(API, "IdentityProvider", NS, "okta")
        await cluster.wait_for(lambda: _gone(cluster), timeout=10)
        await cluster.apply(saml_idp("okta", sign=True))
        await _wait_condition(cluster, "Ready", "True")
        assert decode(await cluster.get("v1", "Secret", NS, "okta-sp-signing"), "tls.key") == key


async def _gone(cluster: Any) -> bool:
    return await cluster.get(API, "IdentityProvider", NS, "okta") is None


async def test_oidc_discovery(cluster: Any, keyplane_operator: Any, idp_server: Any) -> None:
    from .signing import jwks

    issuer = f"{idp_server.url}/realms/acme"
    idp_server.put("/realms/acme/.well-known/openid-configuration",
                   json.dumps(discovery(issuer, idp_server.url)), content_type="application/json")
    idp_server.put("/jwks", json.dumps(jwks()), content_type="application/json")
    await cluster.apply(namespace())
    await cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kc", "namespace": NS},
                         "stringData": {"client-secret": "s3cr3t-value-xyz"},
                         "data": {"client-secret": "czNjcjN0LXZhbHVlLXh5eg=="}})
    spec = {"protocol": "OIDC", "oidc": {"issuer": issuer, "clientID": "keyplane",
                                         "clientSecretRef": {"name": "kc", "key": "client-secret"}}}
    await cluster.apply({"apiVersion": API, "kind": "IdentityProvider",
                         "metadata": {"name": "okta", "namespace": NS}, "spec": spec})
    mismatched = {"protocol": "OIDC", "oidc": {"issuer": issuer + "/", "clientID": "x"}}
    idp_server.put("/realms/acme/.well-known/openid-configuration/", "", status=404)
    await cluster.apply({"apiVersion": API, "kind": "IdentityProvider",
                         "metadata": {"name": "wrong", "namespace": NS}, "spec": mismatched})
    async with keyplane_operator():
        obj = await _wait_condition(cluster, "Ready", "True")
        assert obj["status"]["identityProvider"]["tokenEndpoint"] == f"{idp_server.url}/token"
        assert obj["status"]["serviceProvider"]["redirectURI"] == "https://platform.example.com/sso/oidc/okta/callback"
        assert "s3cr3t-value-xyz" not in json.dumps(obj)
        entry = await cluster.wait_for(lambda: _entry(cluster), timeout=10)
        assert entry["oidc"]["clientSecret"] == "s3cr3t-value-xyz"
        await asyncio.sleep(0)
        bad = await _wait_condition(cluster, "Ready", "False", name="wrong")
        assert condition(bad, "MetadataResolved")["reason"] in {"IssuerMismatch", "MetadataHTTPError"}


async def test_oidc_issuer_mismatch(cluster: Any, keyplane_operator: Any, idp_server: Any) -> None:
    issuer = f"{idp_server.url}/tenant"
    doc = discovery("https://login.example.com/other-tenant/v2.0", idp_server.url)
    idp_server.put("/tenant/.well-known/openid-configuration", json.dumps(doc), content_type="application/json")
    await cluster.apply(namespace())
    await cluster.apply({"apiVersion": API, "kind": "IdentityProvider", "metadata": {"name": "okta", "namespace": NS},
                         "spec": {"protocol": "OIDC", "oidc": {"issuer": issuer, "clientID": "x"}}})
    async with keyplane_operator():
        obj = await _wait_condition(cluster, "Stalled", "True")
        cond = condition(obj, "MetadataResolved")
        assert cond["reason"] == "IssuerMismatch" and "other-tenant" in cond["message"]
        assert not is_ready(obj)


async def test_sp_signing_certificate_is_renewed_before_expiry(cluster: Any, keyplane_operator: Any) -> None:
    from datetime import timedelta

    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta", sign=True))
    async with keyplane_operator(sp_certificate_validity=timedelta(seconds=4),
                                 sp_certificate_renew_before=timedelta(seconds=2)):
        await _wait_condition(cluster, "Ready", "True")
        first = decode(await cluster.get("v1", "Secret", NS, "okta-sp-signing"), "tls.crt")

        async def renewed() -> dict[str, Any] | None:
            entry = await _entry(cluster)
            cert = decode(await cluster.get("v1", "Secret", NS, "okta-sp-signing"), "tls.crt")
            if cert != first and entry and entry["saml"]["sp"]["x509cert"].strip() == cert.strip():
                return entry
            return None

        await cluster.wait_for(renewed, timeout=15)

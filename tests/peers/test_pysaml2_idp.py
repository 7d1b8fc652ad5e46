"""keyplane.app against pysaml2 as the IdP, configured the way a user does it.

pysaml2's metadata (signed and unsigned) goes through ``keyplane render`` like any IdentityProvider;
pysaml2 loads the SP metadata render wrote, verifies the signed AuthnRequest and answers: signed
assertion, signed response, both, encrypted assertions (pysaml2's default self-contained form and
the plain one), IdP-initiated; then single logout both ways. The real keyplane.app ASGI app takes it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from keyplane.app import Bundle, BundleStore, Keyplane
from keyplane.app.logout import LogoutEvent
from keyplane.render import EXIT_READY, run_render
from keyplane.settings import Settings

from .saml_peer import EMAIL_ATTRIBUTE, GROUPS_ATTRIBUTE, PySaml2IdP

APP = "https://app.example.com"
NS = "peers"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"

#: IdentityProvider name -> (domain it owns, metadata signed?, extra spec.saml settings)
IDPS: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "signed": ("corp.example", True, {"allowIdPInitiated": True}),
    "plain": ("plain.example", False, {"wantAssertionsSigned": False}),
    "sealed": ("sealed.example", True, {"wantAssertionsEncrypted": True}),
}


def fingerprint(cert_file: Path) -> str:
    der = x509.load_pem_x509_certificate(cert_file.read_bytes()).public_bytes(serialization.Encoding.DER)
    return "sha256:" + ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def manifests(idp: PySaml2IdP) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}]
    for name, (domain, signed, extra) in IDPS.items():
        source: dict[str, Any] = {"inline": idp.metadata(signed=signed)}
        if signed:
            source["signingCertificateFingerprint"] = fingerprint(idp.cert_file)
        docs.append(
            {
                "apiVersion": "keyplane.dev/v1alpha1",
                "kind": "IdentityProvider",
                "metadata": {"name": name, "namespace": NS},
                "spec": {
                    "protocol": "SAML",
                    "saml": {
                        "metadata": source,
                        "attributeMapping": {"email": EMAIL_ATTRIBUTE, "groups": GROUPS_ATTRIBUTE},
                        **extra,
                    },
                    "serviceProvider": {"baseURL": APP},
                },
            }
        )
        docs.append(
            {
                "apiVersion": "keyplane.dev/v1alpha1",
                "kind": "SSODomain",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"domains": [domain], "identityProviderRef": {"name": name}, "enforcement": "Required"},
            }
        )
    return docs


class Rendered:
    """What ``keyplane render`` printed: the bundle bytes and each IdP's SP metadata."""

    def __init__(self, stream: str) -> None:
        docs = [d for d in yaml.safe_load_all(stream) if d]
        secret = next(d for d in docs if d["kind"] == "Secret" and "identity.json" in d.get("data", {}))
        self.bundle = base64.b64decode(secret["data"]["identity.json"])
        self.sp_metadata = {
            d["metadata"]["name"].removesuffix("-sp-metadata"): d["data"]["metadata.xml"]
            for d in docs
            if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-sp-metadata")
        }


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> PySaml2IdP:
    return PySaml2IdP(tmp_path_factory.mktemp("pysaml2"))


@pytest.fixture(scope="module")
def rendered(idp: PySaml2IdP, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    folder = tmp_path_factory.mktemp("manifests")
    (folder / "peers.yaml").write_text(yaml.safe_dump_all(manifests(idp)))
    out, err = io.StringIO(), io.StringIO()
    code = run_render([str(folder)], Settings(), datetime.now(UTC), out, err, offline=True)
    assert code == EXIT_READY, err.getvalue()
    result = Rendered(out.getvalue())
    idp.load_sp_all(list(result.sp_metadata.values()))
    return result


@pytest.fixture
def logouts() -> list[LogoutEvent]:
    return []


@pytest.fixture
async def kp(rendered: Rendered, logouts: list[LogoutEvent]) -> AsyncIterator[Keyplane]:
    app = Keyplane(
        BundleStore.from_bundle(Bundle.from_json(rendered.bundle)),
        secret_key="s3cret",
        on_logout=lambda request, event: logouts.append(event),
    )
    yield app
    await app.aclose()


@pytest.fixture
async def browser(kp: Keyplane) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kp.asgi()), base_url=APP) as client:
        yield client


def sp(name: str) -> tuple[str, str]:
    """(entity ID, ACS URL) of the SP Keyplane made for IdentityProvider ``name``."""
    return f"{APP}/sso/saml/{name}", f"{APP}/sso/saml/{name}/acs"


async def sp_initiated(
    browser: httpx.AsyncClient, idp: PySaml2IdP, name: str, email: str, **options: Any
) -> tuple[httpx.Response, str]:
    """Log in through IdentityProvider ``name``: the ACS answer and the SAMLResponse that was posted."""
    r = await browser.get(f"/sso/saml/{name}/login", params={"next": "/home"})
    assert r.status_code == 302, r.text
    request = idp.read_authn_request(r.headers["location"])
    entity_id, acs = sp(name)
    assert request.message.issuer.text == entity_id
    assert request.message.assertion_consumer_service_url == acs
    relay_state = parse_qs(urlsplit(r.headers["location"]).query).get("RelayState", [""])[0]
    saml_response = idp.response(entity_id, acs, request.message.id, email, **options)
    form = {"SAMLResponse": saml_response, "RelayState": relay_state}
    answer = await browser.post(f"/sso/saml/{name}/acs", data=form)
    return answer, saml_response


def session(kp: Keyplane, response: httpx.Response) -> dict[str, Any]:
    return dict(kp._signer.loads(response.cookies["keyplane_session"], salt="keyplane.session"))


def posted(saml_response: str) -> etree._Element:
    return etree.fromstring(base64.b64decode(saml_response))


@pytest.mark.parametrize(
    ("name", "email", "options"),
    [
        ("signed", "dana@corp.example", {"sign_assertion": True, "sign_response": False}),
        ("signed", "dana@corp.example", {"sign_assertion": True, "sign_response": True}),
        ("plain", "erin@plain.example", {"sign_assertion": False, "sign_response": True}),
        ("plain", "erin@plain.example", {"sign_assertion": True, "sign_response": False}),
    ],
    ids=["signed-assertion", "both-signed", "signed-response", "unsigned-metadata"],
)
async def test_sp_initiated_login(
    kp: Keyplane, browser: httpx.AsyncClient, idp: PySaml2IdP, name: str, email: str, options: dict[str, Any]
) -> None:
    r, saml_response = await sp_initiated(browser, idp, name, email, **options)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/home"
    user = session(kp, r)
    assert user["email"] == email and user["groups"] == ["platform-admins"]
    document = posted(saml_response)
    signatures = document.findall(f"{{{DS}}}Signature") + document.findall(f"{{{SAML}}}Assertion/{{{DS}}}Signature")
    assert len(signatures) == sum(1 for v in options.values() if v)
    # SHA-256 throughout.
    methods = {m.get("Algorithm") for m in document.iter(f"{{{DS}}}SignatureMethod")}
    assert methods == {"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"}


async def test_an_unsigned_assertion_is_refused_where_wantassertionssigned(
    kp: Keyplane, browser: httpx.AsyncClient, idp: PySaml2IdP
) -> None:
    r, _ = await sp_initiated(browser, idp, "signed", "dana@corp.example", sign_assertion=False, sign_response=True)
    assert r.status_code == 403 and "not signed" in r.text
    assert "keyplane_session" not in r.cookies


async def test_pysaml2s_default_sha1_is_refused_naming_the_setting(
    kp: Keyplane, browser: httpx.AsyncClient, idp: PySaml2IdP
) -> None:
    from saml2.xmldsig import DIGEST_SHA1, SIG_RSA_SHA1

    r, _ = await sp_initiated(
        browser, idp, "signed", "dana@corp.example", sign_assertion=True, sign_alg=SIG_RSA_SHA1, digest_alg=DIGEST_SHA1
    )
    assert r.status_code == 403 and "allowDeprecatedAlgorithms" in r.text


@pytest.mark.parametrize("self_contained", [True, False], ids=["self-contained", "plain-namespaces"])
async def test_encrypted_assertions(
    kp: Keyplane, browser: httpx.AsyncClient, idp: PySaml2IdP, rendered: Rendered, self_contained: bool
) -> None:
    metadata = etree.fromstring(rendered.sp_metadata["sealed"].encode())
    assert metadata.find(f".//{{{MD}}}KeyDescriptor[@use='encryption']") is not None
    r, saml_response = await sp_initiated(
        browser, idp, "sealed", "fay@sealed.example",
        sign_assertion=True, encrypt_assertion=True, encrypt_assertion_self_contained=self_contained,
    )
    # What arrived really was encrypted: no assertion in the clear, only an EncryptedAssertion.
    document = posted(saml_response)
    assert document.find(f"{{{SAML}}}Assertion") is None
    assert document.find(f"{{{SAML}}}EncryptedAssertion") is not None
    assert b"fay@sealed.example" not in base64.b64decode(saml_response)
    assert r.status_code == 303, r.text
    assert session(kp, r)["email"] == "fay@sealed.example"


async def test_an_unencrypted_assertion_is_refused_where_encryption_is_wanted(
    kp: Keyplane, browser: httpx.AsyncClient, idp: PySaml2IdP
) -> None:
    r, _ = await sp_initiated(browser, idp, "sealed", "fay@sealed.example", sign_assertion=True)
    assert r.status_code == 403 and "encrypted" in r.text


async def test_idp_initiated_login(kp: Keyplane, browser: httpx.AsyncClient, idp: PySaml2IdP) -> None:
    entity_id, acs = sp("signed")
    saml_response = idp.response(entity_id, acs, None, "dana@corp.example", sign_assertion=True)
    r = await browser.post("/sso/saml/signed/acs", data={"SAMLResponse": saml_response})
    assert r.status_code == 303, r.text
    assert session(kp, r)["email"] == "dana@corp.example"
    # Where allowIdPInitiated is off (the default), the same kind of response is refused.
    entity_id, acs = sp("plain")
    saml_response = idp.response(entity_id, acs, None, "erin@plain.example", sign_assertion=True)
    r = await browser.post("/sso/saml/plain/acs", data={"SAMLResponse": saml_response})
    assert r.status_code == 403 and "allowIdPInitiated" in r.text


BINDINGS = {
    "redirect": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
    "post": "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
}


async def slo_message(browser: httpx.AsyncClient, name: str, binding: str, params: dict[str, str]) -> httpx.Response:
    if binding == "post":
        return await browser.post(f"/sso/saml/{name}/slo", data=params)
    return await browser.get(f"/sso/saml/{name}/slo", params=params)


@pytest.mark.parametrize("binding", ["redirect", "post"])
async def test_sp_initiated_single_logout(
    kp: Keyplane, browser: httpx.AsyncClient, idp: PySaml2IdP, logouts: list[LogoutEvent], binding: str
) -> None:
    r, _ = await sp_initiated(browser, idp, "signed", "dana@corp.example", sign_assertion=True)
    assert r.status_code == 303 and "keyplane_session" in browser.cookies
    r = await browser.get("/sso/saml/signed/logout", params={"next": "/bye"})
    assert r.status_code == 302, r.text
    assert r.headers["location"].startswith("https://idp.pysaml2.test/slo?")
    assert "keyplane_session" not in browser.cookies
    request = idp.read_logout_request(r.headers["location"])  # pysaml2 checked its signature
    assert request.message.name_id.text == "dana@corp.example"
    assert [i.text for i in request.message.session_index] == [logouts[0].session_indexes[0]]
    assert logouts[0].initiated_by == "app" and logouts[0].subject == "dana@corp.example"
    relay_state = parse_qs(urlsplit(r.headers["location"]).query)["RelayState"][0]
    r = await slo_message(browser, "signed", binding, idp.logout_response(request, BINDINGS[binding], relay_state))
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/bye"


@pytest.mark.parametrize("binding", ["redirect", "post"])
async def test_idp_initiated_single_logout(
    kp: Keyplane, browser: httpx.AsyncClient, idp: PySaml2IdP, logouts: list[LogoutEvent], binding: str
) -> None:
    r, saml_response = await sp_initiated(browser, idp, "signed", "dana@corp.example", sign_assertion=True)
    assert r.status_code == 303
    session_index = posted(saml_response).find(f".//{{{SAML}}}AuthnStatement").get("SessionIndex")
    entity_id, _ = sp("signed")
    request_id, params = idp.logout_request(entity_id, "dana@corp.example", session_index, BINDINGS[binding])
    r = await slo_message(browser, "signed", binding, params)
    assert r.status_code == 302, r.text
    assert "keyplane_session" not in browser.cookies
    assert logouts == [
        LogoutEvent("signed", "SAML", "dana@corp.example", "idp", (session_index,), "dana@corp.example")
    ]
    # The answer is a signed LogoutResponse to pysaml2's request, which pysaml2 accepts.
    location = r.headers["location"]
    assert location.startswith("https://idp.pysaml2.test/slo?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert "Signature" in query
    answer = idp.server.parse_logout_request_response(query["SAMLResponse"], BINDINGS["redirect"])
    assert answer is not None and answer.response.in_response_to == request_id


@pytest.mark.parametrize("binding", ["redirect", "post"])
async def test_an_unsigned_logout_request_is_refused(
    kp: Keyplane, browser: httpx.AsyncClient, idp: PySaml2IdP, logouts: list[LogoutEvent], binding: str
) -> None:
    entity_id, _ = sp("signed")
    _, params = idp.logout_request(entity_id, "dana@corp.example", None, BINDINGS[binding], signed=False)
    r = await slo_message(browser, "signed", binding, params)
    assert r.status_code == 403, r.text
    assert "signed" in r.text and logouts == []


async def test_pysaml2_metadata_by_url_through_the_operator(
    cluster: Any, keyplane_operator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The operator (production defaults: https only, certificate checked against a test CA) reads
    pysaml2's signed metadata from a URL; a login through the bundle and SP metadata it wrote works."""
    import functools

    from integration.idp_server import IdPServer, NatToLocal, public_name_resolver, test_tls
    from keyplane.sources import fetcher

    peer = PySaml2IdP(tmp_path)
    server_tls, client_tls = test_tls()
    server = await IdPServer(tls=server_tls).start()
    nat = NatToLocal(server.port)
    monkeypatch.setattr(fetcher, "MetadataFetcher", functools.partial(
        fetcher.MetadataFetcher, resolver=public_name_resolver, network_backend=nat, ssl_context=client_tls
    ))
    try:
        server.put("/metadata", peer.metadata(signed=True))
        docs = manifests(peer)[:3]  # the Namespace, IdentityProvider "signed" and its SSODomain
        docs[1]["spec"]["saml"]["metadata"] = {
            "url": f"{server.url}/metadata", "signingCertificateFingerprint": fingerprint(peer.cert_file)
        }
        for doc in docs:
            await cluster.apply(doc)
        async with keyplane_operator(allow_private_networks=False, allow_insecure_http=False):

            async def written() -> tuple[dict[str, Any], dict[str, Any]] | None:
                secret = await cluster.get("v1", "Secret", NS, "keyplane-identity")
                config_map = await cluster.get("v1", "ConfigMap", NS, "signed-sp-metadata")
                if secret and config_map and "signed" in json.loads(base64.b64decode(secret["data"]["identity.json"]))[
                    "identityProviders"
                ]:
                    return secret, config_map
                return None

            secret, config_map = await cluster.wait_for(written, timeout=20)
    finally:
        await server.stop()
    assert server.requests and set(nat.connected) == {"93.184.216.34"}
    peer.load_sp_all([config_map["data"]["metadata.xml"]])
    app = Keyplane(
        BundleStore.from_bundle(Bundle.from_json(base64.b64decode(secret["data"]["identity.json"]))),
        secret_key="s3cret",
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app.asgi()), base_url=APP) as client:
        r, _ = await sp_initiated(client, peer, "signed", "dana@corp.example", sign_assertion=True)
    await app.aclose()
    assert r.status_code == 303, r.text
    assert session(app, r)["email"] == "dana@corp.example"


def test_pysaml2_metadata_past_its_valid_until_is_refused(idp: PySaml2IdP, tmp_path: Path) -> None:
    """pysaml2 publishes validUntil = now + 24 h (valid_for); rendered a day later, it is refused."""
    from datetime import timedelta

    from keyplane.render import EXIT_NOT_READY

    (tmp_path / "peers.yaml").write_text(yaml.safe_dump_all(manifests(idp)[:3]))
    out, err = io.StringIO(), io.StringIO()
    later = datetime.now(UTC) + timedelta(hours=24, minutes=1)
    assert run_render([str(tmp_path)], Settings(), later, out, err, offline=True) == EXIT_NOT_READY
    assert f"IdentityProvider {NS}/signed is not Ready: MetadataExpired" in err.getvalue()


async def test_a_tampered_posted_logout_request_is_refused(
    kp: Keyplane, browser: httpx.AsyncClient, idp: PySaml2IdP, logouts: list[LogoutEvent]
) -> None:
    entity_id, _ = sp("signed")
    _, params = idp.logout_request(entity_id, "dana@corp.example", None, BINDINGS["post"])
    xml = base64.b64decode(params["SAMLRequest"]).replace(b"dana@corp.example", b"eve@corp.example")
    r = await slo_message(browser, "signed", "post", {"SAMLRequest": base64.b64encode(xml).decode()})
    assert r.status_code == 403 and "signature is invalid" in r.text
    assert logouts == []


async def test_a_replayed_pysaml2_response_is_refused(
    kp: Keyplane, browser: httpx.AsyncClient, idp: PySaml2IdP
) -> None:
    entity_id, acs = sp("signed")
    saml_response = idp.response(entity_id, acs, None, "dana@corp.example", sign_assertion=True)
    first = await browser.post("/sso/saml/signed/acs", data={"SAMLResponse": saml_response})
    again = await browser.post("/sso/saml/signed/acs", data={"SAMLResponse": saml_response})
    assert first.status_code == 303, first.text
    assert again.status_code == 403 and "replay" in again.text


async def test_an_idp_logout_leaves_another_idps_session_alone(
    kp: Keyplane, browser: httpx.AsyncClient, idp: PySaml2IdP, logouts: list[LogoutEvent]
) -> None:
    r, _ = await sp_initiated(browser, idp, "plain", "erin@plain.example", sign_assertion=True)
    assert r.status_code == 303 and "keyplane_session" in browser.cookies
    entity_id, _ = sp("signed")
    _, params = idp.logout_request(entity_id, "dana@corp.example", None, BINDINGS["redirect"])
    r = await slo_message(browser, "signed", "redirect", params)
    assert r.status_code == 302, r.text
    assert "keyplane_session" in browser.cookies  # erin's session through "plain" is not dana's
    assert [e.subject for e in logouts] == ["dana@corp.example"]

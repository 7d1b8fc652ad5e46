"""Hostile input: fuzzed specs, XXE and billion-laughs metadata, SSRF targets — each gets a clear status
reason, no exception escapes a handler, and no secret value reaches status, Events or logs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
from typing import Any

import pytest
from faultkit import (
    MetadataServer,
    all_statuses_and_events,
    assert_no_crash,
    captured_logs,
    conditions,
    inline_idp,
    is_ready,
    namespace,
    saml_url_idp,
    scim,
    secret_value,
)
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from keyplane.api.identityprovider import IdentityProviderSpec
from keyplane.api.scimconnection import ScimConnectionSpec
from keyplane.api.ssodomain import SSODomainSpec
from keyplane.render import render
from keyplane.settings import Settings

GV = "keyplane.dev/v1alpha1"
NOW = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)

XXE = """<?xml version="1.0"?>
<!DOCTYPE md [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&xxe;">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://x/&xxe;"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"""
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&lol9;"/>"""
QUADRATIC_BLOWUP = ('<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "' + "A" * 50000 + '">]>'
                    '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="'
                    + "&a;" * 2000 + '"/>')

# --- fuzzing the spec models ------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)
junk = json_values | st.text() | st.sampled_from(["", "0", "-1s", "1h", "999999999999h", "\x00", "é" * 300])
urls = st.sampled_from(["https://idp.example.com/md", "http://127.0.0.1/", "file:///etc/passwd", "https://[::1]/",
                        "gopher://x", "https://user:pass@idp.example.com/md?x=1#f", "", "https://" + "a" * 3000])
xml_docs = st.sampled_from([XXE, BILLION_LAUGHS, "<x/>", "not xml", "", "<?xml version='1.0'?>"]) | st.text()


def maybe(strategy: Any) -> Any:
    return strategy | junk


idp_specs = st.fixed_dictionaries({}, optional={
    "protocol": maybe(st.sampled_from(["SAML", "OIDC"])),
    "displayName": junk,
    "saml": maybe(st.fixed_dictionaries({}, optional={
        "metadata": maybe(st.fixed_dictionaries({}, optional={
            "url": maybe(urls), "inline": maybe(xml_docs), "refreshInterval": junk,
            "configMapRef": maybe(st.fixed_dictionaries({"name": junk, "key": junk})),
            "signingCertificateFingerprint": junk})),
        "manual": maybe(st.fixed_dictionaries({}, optional={
            "entityID": junk, "ssoURL": maybe(urls), "ssoBinding": junk, "certificates": maybe(st.lists(junk))})),
        "signAuthnRequests": st.just(False) | junk,
        "attributeMapping": junk, "nameIDFormat": junk})),
    "oidc": maybe(st.fixed_dictionaries({}, optional={
        "issuer": maybe(urls), "clientID": junk, "scopes": junk,
        "clientSecretRef": maybe(st.fixed_dictionaries({"name": junk, "key": junk}))})),
    "serviceProvider": maybe(st.fixed_dictionaries({}, optional={"baseURL": maybe(urls)})),
})
scim_specs = st.fixed_dictionaries({}, optional={
    "identityProviderRef": maybe(st.fixed_dictionaries({"name": junk})),
    "token": maybe(st.fixed_dictionaries({}, optional={"secretName": junk, "rotationInterval": junk, "overlap": junk})),
    "provisioning": junk,
    "groupBindings": maybe(st.lists(st.fixed_dictionaries({"group": junk, "role": junk}), max_size=3)),
    "unboundGroupRole": junk,
})
ssod_specs = st.fixed_dictionaries({}, optional={
    "domains": maybe(st.lists(junk | st.sampled_from(["acme.com", "ACME.com", "*.acme.com", "acme..com"]),
                              max_size=3)),
    "identityProviderRef": maybe(st.fixed_dictionaries({"name": junk})),
    "enforcement": junk, "breakGlassUsers": junk,
    "verification": maybe(st.fixed_dictionaries({"method": maybe(st.sampled_from(["None", "DNS"]))})),
})

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(st.one_of(json_values, idp_specs))
def test_identity_provider_spec_raises_only_validation_errors(data: Any) -> None:
    with contextlib.suppress(ValidationError):
        IdentityProviderSpec.model_validate(data)


@FUZZ
@given(st.one_of(json_values, scim_specs))
def test_scim_connection_spec_raises_only_validation_errors(data: Any) -> None:
    with contextlib.suppress(ValidationError):
        ScimConnectionSpec.model_validate(data)


@FUZZ
@given(st.one_of(json_values, ssod_specs))
def test_sso_domain_spec_raises_only_validation_errors(data: Any) -> None:
    with contextlib.suppress(ValidationError):
        SSODomainSpec.model_validate(data)


def _doc(kind: str, name: str, spec: Any, annotations: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "fuzz", "uid": f"uid-{kind}-{name}", "generation": 1}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": GV, "kind": kind, "metadata": meta, "spec": spec}


# Specs shaped like the CRD's schema (what an API server admits), with hostile *values*.
text = st.text(max_size=40) | st.sampled_from(["", "0", "-1s", "1h", "999999999999h", "0s", "é" * 300, "\x00",
                                               "okta", "Admin", "None", "DNS", "Required", "acme.com"])
typed_urls = urls | st.text(max_size=30)
admissible_idp = st.fixed_dictionaries({"protocol": st.sampled_from(["SAML", "OIDC"])}, optional={
    "displayName": text,
    "saml": st.fixed_dictionaries({}, optional={
        "metadata": st.fixed_dictionaries({}, optional={
            "url": typed_urls, "inline": xml_docs, "refreshInterval": text,
            "configMapRef": st.fixed_dictionaries({"name": text, "key": text}),
            "signingCertificateFingerprint": text}),
        "manual": st.fixed_dictionaries({"entityID": text, "ssoURL": typed_urls}, optional={
            "ssoBinding": st.sampled_from(["HTTP-Redirect", "HTTP-POST"]) | text,
            "certificates": st.lists(text, max_size=2)}),
        "signAuthnRequests": st.just(False), "wantAssertionsSigned": st.booleans(),
        "attributeMapping": st.dictionaries(st.sampled_from(["email", "groups", "firstName"]), text, max_size=2),
        "nameIDFormat": text}),
    "oidc": st.fixed_dictionaries({"issuer": typed_urls, "clientID": text}, optional={
        "scopes": st.lists(text, max_size=3),
        "clientSecretRef": st.fixed_dictionaries({"name": text, "key": text})}),
    "serviceProvider": st.fixed_dictionaries({}, optional={"baseURL": typed_urls}),
})
admissible_scim = st.fixed_dictionaries({}, optional={
    "identityProviderRef": st.fixed_dictionaries({"name": text}),
    "token": st.fixed_dictionaries({}, optional={"secretName": text, "rotationInterval": text, "overlap": text}),
    "provisioning": st.fixed_dictionaries({}, optional={"defaultUserRole": text, "deprovisionAction": text,
                                                         "userIdentifier": text}),
    "groupBindings": st.lists(st.fixed_dictionaries({"group": text, "role": text}), max_size=3),
    "unboundGroupRole": text,
})
admissible_ssod = st.fixed_dictionaries({"domains": st.lists(text, min_size=1, max_size=3),
                                         "identityProviderRef": st.fixed_dictionaries({"name": text})}, optional={
    "enforcement": st.sampled_from(["Required", "Optional"]) | text,
    "breakGlassUsers": st.lists(text, max_size=2),
    "verification": st.fixed_dictionaries({"method": st.sampled_from(["None", "DNS"]) | text}),
})


def _schema_validator(kind: str) -> Any:
    import jsonschema

    from keyplane.api.crds import all_crds

    crd = next(c for c in all_crds() if c["spec"]["names"]["kind"] == kind)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return jsonschema.Draft7Validator(schema)


ADMITS = {kind: _schema_validator(kind) for kind in ("IdentityProvider", "ScimConnection", "SSODomain")}


def _admissible(kind: str, spec: Any) -> Any:
    """`spec` with every part the CRD schema rejects removed (as if the user had fixed it), or None."""
    import copy

    spec = copy.deepcopy(spec)
    for _ in range(50):
        error = next(iter(ADMITS[kind].iter_errors(spec)), None)
        if error is None:
            return spec
        path = list(error.absolute_path)
        if not path:
            return None
        parent = spec
        for part in path[:-1]:
            parent = parent[part]
        del parent[path[-1]]
    return None


def _render_random(idp: Any, conn: Any, dom: Any, rotate: Any) -> None:
    docs = [_doc("IdentityProvider", "okta", idp), _doc("ScimConnection", "okta", conn, rotate),
            _doc("SSODomain", "acme", dom), _doc("SSODomain", "rival", dom)]
    result = asyncio.run(render(docs, Settings(), NOW, offline=True))
    for body in result.inputs:
        ready = conditions(body).get("Ready")
        assert ready is not None and ready["reason"], body["kind"]  # every object says why
        if ready["status"] != "True":
            assert ready["message"], body["kind"]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(idp=admissible_idp, conn=admissible_scim, dom=admissible_ssod,
       rotate=st.none() | st.dictionaries(st.sampled_from(["keyplane.dev/rotate-token", "x"]), st.text(max_size=8)))
def test_reconcile_never_raises_on_admissible_specs(idp: Any, conn: Any, dom: Any, rotate: Any) -> None:
    """The whole observe + reconcile pipeline (as `keyplane render --offline` runs it) on random specs that
    the CRD's schema admits (what reaches the operator in a cluster): a status with a reason, never a raise."""
    idp, conn, dom = (_admissible("IdentityProvider", idp), _admissible("ScimConnection", conn),
                      _admissible("SSODomain", dom))
    assume(idp is not None and conn is not None and dom is not None)
    _render_random(idp, conn, dom, rotate)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.generate])
@given(idp=st.one_of(idp_specs, json_values), conn=st.one_of(scim_specs, json_values),
       dom=st.one_of(ssod_specs, json_values))
def test_reconcile_never_raises_on_arbitrary_shapes(idp: Any, conn: Any, dom: Any) -> None:
    _render_random(idp, conn, dom, None)


# --- end to end through the operator -------------------------------------------------------------------------

@pytest.mark.slow
async def test_xxe_and_entity_expansion_are_refused_with_a_reason(cluster: Any, keyplane_operator: Any) -> None:
    ns = "hostile-xml"
    await cluster.create(namespace(ns))
    docs = {"xxe": XXE, "laughs": BILLION_LAUGHS, "blowup": QUADRATIC_BLOWUP}
    async with MetadataServer() as server, keyplane_operator():
        with captured_logs() as logs:
            for name, xml in docs.items():
                await cluster.create(inline_idp(f"inline-{name}", ns, xml=xml))
                server.static[f"/{name}.xml"] = xml.encode()
                await cluster.create(saml_url_idp(f"url-{name}", ns, server.url(f"/{name}.xml")))

            async def all_judged() -> dict[str, Any] | bool:
                out = {}
                for name in docs:
                    for prefix in ("inline", "url"):
                        obj = await cluster.get(GV, "IdentityProvider", ns, f"{prefix}-{name}")
                        cond = conditions(obj).get("MetadataResolved")
                        if not cond or cond["status"] != "False":
                            return False
                        out[f"{prefix}-{name}"] = (cond, conditions(obj)["Ready"])
                return out

            judged = await cluster.wait_for(all_judged, timeout=20)
            for name, (resolved, ready) in judged.items():
                assert ready["status"] == "False", name
                assert resolved["reason"] not in ("Resolved", "Resolving") and resolved["message"], name
                assert "root:" not in json.dumps(resolved)  # /etc/passwd never read
            events = await cluster.list("v1", "Event", ns)
            assert {e["involvedObject"]["name"] for e in events} >= {f"inline-{n}" for n in docs}
        assert_no_crash(logs.text())


SSRF_TARGETS = {
    "loopback": "http://127.0.0.1:1/metadata",
    "localhost": "http://localhost:1/metadata",
    "ipv6-loopback": "http://[::1]:1/metadata",
    "mapped-v6": "http://[::ffff:127.0.0.1]:1/metadata",
    "cloud-metadata": "http://169.254.169.254/latest/meta-data/",
    "private": "http://10.1.2.3/metadata",
    "hex-ip": "http://0x7f000001:1/metadata",
    "decimal-ip": "http://2130706433:1/metadata",
    "file": "file:///etc/passwd",
    "gopher": "gopher://127.0.0.1:25/_HELO",
}


@pytest.mark.slow
async def test_ssrf_targets_are_refused_with_a_reason(cluster: Any, keyplane_operator: Any) -> None:
    ns = "hostile-ssrf"
    await cluster.create(namespace(ns))
    async with keyplane_operator(allow_private_networks=False):
        with captured_logs() as logs:
            for name, url in SSRF_TARGETS.items():
                await cluster.create(saml_url_idp(name, ns, url, refresh="1h"))

            async def all_refused() -> dict[str, Any] | bool:
                out = {}
                for name in SSRF_TARGETS:
                    obj = await cluster.get(GV, "IdentityProvider", ns, name)
                    if "Ready" not in conditions(obj):
                        return False
                    out[name] = conditions(obj)
                return out

            seen = await cluster.wait_for(all_refused, timeout=20)
            for name, conds in seen.items():
                assert conds["Ready"]["status"] == "False", name
                reason = conds["Ready"]["reason"]
                assert reason in ("MetadataURLForbidden", "InvalidSpec", "SpecInvalid") or "Invalid" in reason, (
                    name, conds["Ready"])
                assert conds["Ready"]["message"], name
        assert_no_crash(logs.text())


@pytest.mark.slow
async def test_no_secret_value_in_status_events_or_logs(cluster: Any, keyplane_operator: Any) -> None:
    from joserfc.jwk import RSAKey

    ns = "hostile-secrets"
    client_secret = "oidc-client-secret-" + "Zq8" * 10
    await cluster.create(namespace(ns))
    await cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "google-oidc", "namespace": ns},
                          "data": {"client-secret": base64.b64encode(client_secret.encode()).decode()}})
    async with MetadataServer() as server, keyplane_operator() as runtime:
        issuer = server.url("")
        server.static["/.well-known/openid-configuration"] = json.dumps({
            "issuer": issuer, "authorization_endpoint": issuer + "/authorize", "token_endpoint": issuer + "/token",
            "jwks_uri": issuer + "/jwks", "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"]}).encode()
        server.static["/jwks"] = json.dumps({"keys": [RSAKey.generate_key(2048).as_dict(private=False)]}).encode()
        with captured_logs() as logs:
            await cluster.create(inline_idp("okta", ns, sign=True))
            await cluster.create({"apiVersion": GV, "kind": "IdentityProvider", "metadata": {"name": "google",
                                  "namespace": ns}, "spec": {"protocol": "OIDC", "oidc": {
                                      "issuer": issuer, "clientID": "abc",
                                      "clientSecretRef": {"name": "google-oidc", "key": "client-secret"}}}})
            await cluster.create(scim("okta", ns, idp="okta"))

            async def ready() -> bool:
                for kind, name in (("IdentityProvider", "okta"), ("IdentityProvider", "google"),
                                   ("ScimConnection", "okta")):
                    if not is_ready(await cluster.get(GV, kind, ns, name)):
                        return False
                return True

            await cluster.wait_for(ready, timeout=20)
            # Rotate once, so the rotation path's logs and Events are scanned too.
            await cluster.patch(GV, "ScimConnection", ns, "okta",
                                {"metadata": {"annotations": {"keyplane.dev/rotate-token": "now"}}})
            first = secret_value(await cluster.get("v1", "Secret", ns, "okta-scim-token"))
            await cluster.wait_for(lambda: _token_changed(cluster, ns, first), timeout=15)
            await asyncio.sleep(1.5)
        token = secret_value(await cluster.get("v1", "Secret", ns, "okta-scim-token"))
        key_pem = secret_value(await cluster.get("v1", "Secret", ns, "okta-sp-signing"), "tls.key") or ""
        key_lines = [ln for ln in key_pem.splitlines() if ln and "-----" not in ln]
        secrets = {"scim token": token, "previous scim token": first, "oidc client secret": client_secret,
                   "sp private key": key_lines[len(key_lines) // 2]}
        assert all(secrets.values()), secrets.keys()
        visible = await all_statuses_and_events(cluster, [ns]) + "\n" + logs.text()
        for what, value in secrets.items():
            assert value not in visible, f"the {what} leaked"
        assert runtime is not None
        assert_no_crash(logs.text())


async def _token_changed(cluster: Any, ns: str, first: str | None) -> bool:
    return secret_value(await cluster.get("v1", "Secret", ns, "okta-scim-token")) not in (None, first)

"""Every example folder renders Ready with `keyplane render`, validates against the CRDs, and its README
gives the values the IdP needs.

External URLs (SAML metadata, OIDC discovery) are served from a local fixture server on 127.0.0.1; the
URLs are substituted in the loaded manifests, and the Secrets/ConfigMaps a README tells the user to
create are added. Certificates and keys are generated at test time.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from keyplane.api.crds import all_crds
from keyplane.render import EXIT_READY, read_documents, run_render
from keyplane.settings import Settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
GROUP_VERSION = "keyplane.dev/v1alpha1"
# quickstart/, app/ and consume-bundle/ belong to other suites; every other folder with Keyplane objects is
# an IdP/GitOps example of this one.
NOT_MINE = {"quickstart", "app", "consume-bundle"}


def _has_keyplane_objects(folder: Path) -> bool:
    return any(GROUP_VERSION in p.read_text() for p in folder.rglob("*.yaml"))


FOLDERS = sorted(p.name for p in EXAMPLES.iterdir()
                 if p.is_dir() and p.name not in NOT_MINE and _has_keyplane_objects(p))
NOW = datetime.now(tz=UTC).replace(microsecond=0)
SETTINGS = Settings(allow_private_networks=True, allow_insecure_http=True, metadata_timeout=5.0,
                    metadata_connect_timeout=2.0)


def test_the_expected_examples_exist() -> None:
    assert {"okta-saml-scim", "entra-id-saml-scim", "google-workspace-saml", "keycloak-oidc", "gitops"} <= set(FOLDERS)
    for folder in FOLDERS:
        assert (EXAMPLES / folder / "README.md").is_file(), folder


# ---- fixtures: a signing certificate, an RSA JWK, a tiny HTTP server ---------------------------------------

@dataclass
class Keys:
    certificate_b64: str
    jwk: dict[str, Any]


@pytest.fixture(scope="module")
def keys() -> Keys:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyplane example idp signing")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    numbers = key.public_key().public_numbers()

    def b64url(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "example-1", "n": b64url(numbers.n),
           "e": b64url(numbers.e)}
    return Keys(base64.b64encode(der).decode(), jwk)


@dataclass
class FixtureServer:
    base: str
    routes: dict[str, tuple[str, bytes]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def server() -> Iterator[FixtureServer]:
    routes: dict[str, tuple[str, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = routes.get(self.path.split("?", 1)[0])
            if found is None:
                self.send_error(404)
                return
            content_type, body = found
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield FixtureServer(f"http://127.0.0.1:{httpd.server_address[1]}", routes)
    finally:
        httpd.shutdown()
        httpd.server_close()


def saml_metadata(entity_id: str, sso_url: str, certificate_b64: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity_id}">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="false"
                       protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data>
        <ds:X509Certificate>{certificate_b64}</ds:X509Certificate>
      </ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{sso_url}"/>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{sso_url}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
"""


def keyplane_objects(folder: str) -> list[dict[str, Any]]:
    docs = read_documents([str(EXAMPLES / folder)])
    return [d for d in docs if d.get("apiVersion") == GROUP_VERSION]


def with_fixtures(docs: list[dict[str, Any]], server: FixtureServer, keys: Keys) -> list[dict[str, Any]]:
    """The example's objects with external URLs pointed at the fixture server, plus what the README has
    the user create (ConfigMap with downloaded metadata, client Secret)."""
    out: list[dict[str, Any]] = []
    for original in docs:
        doc = copy.deepcopy(original)
        out.append(doc)
        if doc["kind"] != "IdentityProvider":
            continue
        namespace, name = doc["metadata"].get("namespace", "default"), doc["metadata"]["name"]
        prefix = f"/{namespace}/{name}"
        spec = doc["spec"]
        metadata_source = (spec.get("saml") or {}).get("metadata") or {}
        xml = saml_metadata(metadata_source.get("entityID") or f"https://idp.example/{name}",
                            f"https://idp.example/{name}/sso", keys.certificate_b64)
        if "url" in metadata_source:
            metadata_source["url"] = server.base + prefix + "/metadata"
            server.routes[prefix + "/metadata"] = ("application/samlmetadata+xml", xml.encode())
        if "configMapRef" in metadata_source:
            ref = metadata_source["configMapRef"]
            out.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": ref["name"], "namespace": namespace},
                        "data": {ref.get("key", "metadata.xml"): xml}})
        if oidc := spec.get("oidc"):
            issuer = oidc["issuer"] = server.base + prefix
            discovery = {
                "issuer": issuer, "authorization_endpoint": issuer + "/protocol/openid-connect/auth",
                "token_endpoint": issuer + "/protocol/openid-connect/token",
                "userinfo_endpoint": issuer + "/protocol/openid-connect/userinfo",
                "jwks_uri": issuer + "/protocol/openid-connect/certs",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
            }
            server.routes[prefix + "/.well-known/openid-configuration"] = (
                "application/json", json.dumps(discovery).encode())
            server.routes[prefix + "/protocol/openid-connect/certs"] = (
                "application/json", json.dumps({"keys": [keys.jwk]}).encode())
            if ref := oidc.get("clientSecretRef"):
                secret = base64.b64encode(b"example-client-secret").decode()
                out.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": {"name": ref["name"], "namespace": namespace},
                            "data": {ref["key"]: secret}})
    return out


@dataclass
class Rendered:
    code: int
    err: str
    objects: list[dict[str, Any]]


def render_example(folder: str, server: FixtureServer, keys: Keys, tmp: Path) -> Rendered:
    docs = with_fixtures(keyplane_objects(folder), server, keys)
    path = tmp / f"{folder}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    out, err = io.StringIO(), io.StringIO()
    code = run_render([str(path)], SETTINGS, NOW, out, err)
    return Rendered(code, err.getvalue(), [d for d in yaml.safe_load_all(out.getvalue()) if d])


@pytest.fixture(scope="module")
def rendered(server: FixtureServer, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    tmp = tmp_path_factory.mktemp("examples")
    return {folder: render_example(folder, server, keys, tmp) for folder in FOLDERS}


# ---- the tests -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("folder", FOLDERS)
def test_example_renders_ready(rendered: dict[str, Rendered], folder: str) -> None:
    result = rendered[folder]
    assert result.code == EXIT_READY, result.err
    kinds = [o["kind"] for o in result.objects if o["apiVersion"] == GROUP_VERSION]
    assert "IdentityProvider" in kinds and "SSODomain" in kinds
    for obj in result.objects:
        if obj["apiVersion"] == GROUP_VERSION:
            ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True", (obj["metadata"]["name"], ready)
    # the bundle Secret is written for the namespace
    assert [o for o in result.objects if o["kind"] == "Secret" and o["metadata"]["name"] == "keyplane-identity"]


CRD_SCHEMAS = {crd["spec"]["names"]["kind"]: crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
               for crd in all_crds()}


@pytest.mark.parametrize("folder", FOLDERS)
def test_manifests_validate_against_the_crds(folder: str) -> None:
    objects = keyplane_objects(folder)
    assert objects
    for obj in objects:
        jsonschema.Draft7Validator(CRD_SCHEMAS[obj["kind"]]).validate(obj)
        assert obj["metadata"].get("namespace"), "examples name their namespace"
        assert "status" not in obj


IDP_FOLDERS = [f for f in FOLDERS if f != "gitops"]


@pytest.mark.parametrize("folder", IDP_FOLDERS)
def test_readme_gives_what_the_idp_needs(rendered: dict[str, Rendered], folder: str) -> None:
    readme = (EXAMPLES / folder / "README.md").read_text()
    assert "kubectl apply -f examples/" + folder in readme
    assert "-o wide" in readme
    for obj in rendered[folder].objects:
        if obj.get("apiVersion") != GROUP_VERSION:
            continue
        status, name, namespace = obj["status"], obj["metadata"]["name"], obj["metadata"]["namespace"]
        if obj["kind"] == "IdentityProvider":
            sp = status["serviceProvider"]
            for key in ("acsURL", "entityID", "redirectURI"):
                if key in sp:
                    assert sp[key] in readme, f"{key} {sp[key]} missing from {folder}/README.md"
        if obj["kind"] == "ScimConnection":
            assert status["endpointURL"] in readme
            secret = status["tokenSecretRef"]["name"]
            command = (f"kubectl get secret {secret} -n {namespace} -o jsonpath='{{.data.token}}' | base64 -d")
            assert command in readme
            assert name in readme


def test_google_workspace_has_no_scim(rendered: dict[str, Rendered]) -> None:
    kinds = {o["kind"] for o in keyplane_objects("google-workspace-saml")}
    assert "ScimConnection" not in kinds
    assert "No SCIM" in (EXAMPLES / "google-workspace-saml" / "README.md").read_text()


def test_known_quirks_are_documented() -> None:
    okta = (EXAMPLES / "okta-saml-scim" / "README.md").read_text()
    assert "Unique identifier field for users" in okta and "Application username" in okta
    entra = (EXAMPLES / "entra-id-saml-scim" / "README.md").read_text()
    for text in ("?aadOptscim062020", "userPrincipalName", "40 minutes", "Provision on demand"):
        assert text in entra
    keycloak = (EXAMPLES / "keycloak-oidc" / "README.md").read_text()
    for text in ("Client authentication: On", "Valid redirect URIs", "Group Membership"):
        assert text in keycloak
    # the userIdentifier of each ScimConnection matches what its README configures in the IdP
    (okta_scim,) = [o for o in keyplane_objects("okta-saml-scim") if o["kind"] == "ScimConnection"]
    assert okta_scim["spec"]["provisioning"]["userIdentifier"] == "email"
    (entra_scim,) = [o for o in keyplane_objects("entra-id-saml-scim") if o["kind"] == "ScimConnection"]
    assert entra_scim["spec"]["provisioning"]["userIdentifier"] == "userName"


# ---- GitOps wiring ----------------------------------------------------------------------------------------

def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def wave(obj: dict[str, Any]) -> int:
    return int((obj["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0"))


def test_argocd_applications_sync_crds_first() -> None:
    apps = {a["metadata"]["name"]: a for p in sorted((EXAMPLES / "gitops" / "argocd").glob("*.yaml"))
            for a in load_all(p)}
    assert {a["kind"] for a in apps.values()} == {"Application"}
    operator, config = apps["keyplane-operator"], apps["keyplane-config"]
    assert wave(operator) < wave(config)
    assert (REPO / operator["spec"]["source"]["path"] / "Chart.yaml").is_file()
    assert operator["spec"]["source"]["helm"]["valuesObject"]["crds"]["managed"] is True
    assert operator["spec"]["source"]["helm"]["skipCrds"] is True
    config_dir = REPO / config["spec"]["source"]["path"]
    assert config_dir.is_dir()
    objects = keyplane_objects(str(config_dir.relative_to(EXAMPLES)))
    idp_waves = {wave(o) for o in objects if o["kind"] == "IdentityProvider"}
    other_waves = {wave(o) for o in objects if o["kind"] != "IdentityProvider"}
    assert max(idp_waves) < min(other_waves)


def test_flux_kustomizations_sync_crds_first() -> None:
    flux = [o for p in sorted((EXAMPLES / "gitops" / "flux").rglob("*.yaml")) for o in load_all(p)]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in flux:
        by_kind.setdefault(obj["kind"], []).append(obj)
    (repo,) = by_kind["GitRepository"]
    kustomizations = {k["metadata"]["name"]: k for k in by_kind["Kustomization"]}
    operator, config = kustomizations["keyplane-operator"], kustomizations["keyplane-config"]
    assert config["spec"]["dependsOn"] == [{"name": "keyplane-operator"}]
    for k in (operator, config):
        assert k["spec"]["sourceRef"] == {"kind": "GitRepository", "name": repo["metadata"]["name"]}
        assert (REPO / k["spec"]["path"]).is_dir()
        assert k["spec"]["wait"] is True
    (release,) = by_kind["HelmRelease"]
    assert (REPO / release["spec"]["chart"]["spec"]["chart"] / "Chart.yaml").is_file()
    assert (REPO / operator["spec"]["path"] / "helmrelease.yaml").is_file()
    assert {e["kind"] for e in config["spec"]["healthCheckExprs"]} == {
        "IdentityProvider", "SSODomain", "ScimConnection"}

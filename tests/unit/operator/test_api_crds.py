"""The generated CRDs: structural, named as documented, described, with the CEL rules DESIGN.md asks for,
in sync with the committed files; every example validates against both the CRD schema and the models."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from keyplane_op_helpers import EXAMPLES, REPO
from pydantic import BaseModel, ValidationError

from keyplane.api.crds import all_crds, dump_crd
from keyplane.api.kinds import API_GROUP_VERSION, KINDS, KINDS_BY_NAME

CRDS = {crd["spec"]["names"]["kind"]: crd for crd in all_crds()}
_COMPOSITION = {"$ref", "anyOf", "oneOf", "allOf", "not", "$defs", "definitions"}


def root_schema(kind: str) -> dict[str, Any]:
    (version,) = CRDS[kind]["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (properties and array items)."""
    yield path, node
    for name, prop in (node.get("properties") or {}).items():
        yield from walk(prop, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")


def rules_at(kind: str) -> dict[str, list[str]]:
    return {
        path: [v["rule"] for v in node["x-kubernetes-validations"]]
        for path, node in walk(root_schema(kind))
        if "x-kubernetes-validations" in node
    }


def example_objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for file in sorted(EXAMPLES.rglob("*")):
        if file.suffix not in {".yaml", ".yml"}:
            continue
        for doc in yaml.safe_load_all(file.read_text()):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("keyplane.dev/"):
                found.append((f"{file.relative_to(REPO)}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


EXAMPLE_OBJECTS = example_objects()


# --- structure and names -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural(kind: str) -> None:
    for path, node in walk(root_schema(kind)):
        assert not _COMPOSITION & node.keys(), f"{kind}{path} uses {_COMPOSITION & node.keys()}"
        assert "type" in node, f"{kind}{path} has no type"
        if "properties" in node:
            assert node["type"] == "object", f"{kind}{path}"
            assert "additionalProperties" not in node, f"{kind}{path}: additionalProperties beside properties"
        if node["type"] == "array":
            assert isinstance(node.get("items"), dict), f"{kind}{path}: array without items schema"
        for required in node.get("required") or []:
            assert required in node.get("properties", {}), (
                f"{kind}{path}: required {required} is not a property"
            )


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_defaults_are_scalars_that_validate_against_their_own_schema(kind: str) -> None:
    # The API server refuses a CRD whose defaults do not validate; object defaults would blur user intent.
    for path, node in walk(root_schema(kind)):
        if "default" in node:
            assert not isinstance(node["default"], dict | list), f"{kind}{path}"
            jsonschema.Draft7Validator({k: v for k, v in node.items() if k != "default"}).validate(
                node["default"]
            )


@pytest.mark.parametrize(
    ("kind", "plural", "short"),
    [
        ("IdentityProvider", "identityproviders", "idp"),
        ("SSODomain", "ssodomains", "ssod"),
        ("ScimConnection", "scimconnections", "scim"),
    ],
)
def test_names_scope_and_status_subresource(kind: str, plural: str, short: str) -> None:
    crd = CRDS[kind]
    assert crd["metadata"]["name"] == f"{plural}.keyplane.dev"
    spec = crd["spec"]
    assert spec["group"] == "keyplane.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == [short]
    assert spec["names"]["categories"] == ["keyplane"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert f"{spec['group']}/{version['name']}" == API_GROUP_VERSION


@pytest.mark.parametrize(
    ("kind", "middle"),
    [
        ("IdentityProvider", ("SSO URL", ".status.identityProvider.ssoURL")),
        ("SSODomain", ("Domains", ".spec.domains")),
        ("ScimConnection", ("Endpoint", ".status.endpointURL")),
    ],
)
def test_printer_columns(kind: str, middle: tuple[str, str]) -> None:
    (version,) = CRDS[kind]["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names[:2] == ["Ready", "Reason"]
    assert names[-1] == "Age"
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert columns["Age"] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    name, json_path = middle
    assert columns[name]["jsonPath"] == json_path
    assert columns[name].get("priority", 0) == 0, f"{name} must show without -o wide"


def test_idp_wide_columns_show_what_an_admin_pastes_into_the_idp() -> None:
    (version,) = CRDS["IdentityProvider"]["spec"]["versions"]
    wide = {c["jsonPath"] for c in version["additionalPrinterColumns"] if c.get("priority") == 1}
    assert {
        ".status.serviceProvider.acsURL",
        ".status.serviceProvider.entityID",
        ".status.serviceProvider.redirectURI",
    } <= wide


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_spec_and_status_field_is_described(kind: str) -> None:
    schema = root_schema(kind)
    undocumented = []
    for part in ("spec", "status"):
        for path, node in walk(schema["properties"][part], f".{part}"):
            is_property = not path.endswith("[]")
            if is_property and not str(node.get("description", "")).strip():
                undocumented.append(path)
    assert not undocumented, f"{kind}: fields without description: {undocumented}"


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_conditions_are_a_map_keyed_by_type(kind: str) -> None:
    conditions = root_schema(kind)["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert {"type", "status", "reason", "lastTransitionTime"} <= set(item["required"])
    assert {"message", "observedGeneration"} <= set(item["properties"])
    assert "observedGeneration" in root_schema(kind)["properties"]["status"]["properties"]


# --- CEL rules where DESIGN.md puts them ----------------------------------------------------------


def test_cel_rules_are_where_design_says() -> None:
    idp = rules_at("IdentityProvider")
    assert any("self.protocol == 'SAML'" in r and "has(self.oidc)" in r for r in idp[".spec"])
    metadata = idp[".spec.saml.metadata"]
    assert any(all(f"has(self.{f})" in r for f in ("url", "configMapRef", "inline")) for r in metadata)
    assert any("refreshInterval" in r for r in metadata)
    assert any("has(self.metadata)" in r and "has(self.manual)" in r for r in idp[".spec.saml"])

    scim = rules_at("ScimConnection")
    assert any("exists_one" in r and "group" in r for r in scim[".spec.groupBindings"])

    domains = rules_at("SSODomain")
    assert any("breakGlassUsers" in r and "domains" in r for r in domains[".spec"])


def test_cel_rules_have_messages() -> None:
    for kind in CRDS:
        for _path, node in walk(root_schema(kind)):
            for validation in node.get("x-kubernetes-validations", []):
                assert validation["message"].strip(), f"{kind}: rule without message: {validation['rule']}"


# --- drift -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", ["crds", "helm/keyplane/crds"])
def test_committed_crds_match_the_models(directory: str) -> None:
    committed = sorted(p.name for p in (REPO / directory).glob("*.yaml"))
    assert committed == sorted(f"keyplane.dev_{k.plural}.yaml" for k in KINDS)
    for kind in KINDS:
        path = REPO / directory / f"keyplane.dev_{kind.plural}.yaml"
        assert path.read_text() == dump_crd(CRDS[kind.kind]), (
            f"{path} drifted from operator/keyplane/api: run `keyplane crds -o crds -o helm/keyplane/crds`"
        )


# --- examples --------------------------------------------------------------------------------------


def test_examples_cover_every_kind() -> None:
    assert {doc["kind"] for _, doc in EXAMPLE_OBJECTS} == set(CRDS)


def _prune_check(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Fields the API server would silently prune (not declared in a structural schema)."""
    unknown = []
    if isinstance(value, dict) and "properties" in schema:
        for key, child in value.items():
            if key not in schema["properties"]:
                unknown.append(f"{path}.{key}")
            else:
                unknown += _prune_check(schema["properties"][key], child, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, child in enumerate(value):
            unknown += _prune_check(schema["items"], child, f"{path}[{index}]")
    return unknown


@pytest.mark.parametrize(("label", "doc"), EXAMPLE_OBJECTS, ids=[label for label, _ in EXAMPLE_OBJECTS])
def test_example_validates_against_crd_schema_and_model(label: str, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == API_GROUP_VERSION, label
    schema = root_schema(doc["kind"])
    jsonschema.Draft7Validator(schema).validate(doc)
    assert not _prune_check(schema["properties"]["spec"], doc["spec"], ".spec"), label
    KINDS_BY_NAME[doc["kind"]].spec_model.model_validate(doc["spec"])


# --- invalid manifests are refused, naming the field ------------------------------------------------


def _example(kind: str, name: str) -> dict[str, Any]:
    """A quickstart object's spec (other example folders reuse the same names)."""
    for label, doc in EXAMPLE_OBJECTS:
        in_quickstart = label.startswith(str(Path("examples") / "quickstart"))
        if in_quickstart and doc["kind"] == kind and doc["metadata"]["name"] == name:
            return copy.deepcopy(doc["spec"])
    raise AssertionError(f"no example {kind}/{name}")


def _mutate(kind: str, name: str, change: Any) -> dict[str, Any]:
    spec = _example(kind, name)
    change(spec)
    return spec


INVALID = [
    (
        "wrong enum",
        "ScimConnection",
        "okta",
        lambda s: s["provisioning"].update(deprovisionAction="Purge"),
        "deprovisionAction",
    ),
    ("wrong protocol", "IdentityProvider", "okta", lambda s: s.update(protocol="CAS"), "protocol"),
    ("missing required", "SSODomain", "acme", lambda s: s.pop("identityProviderRef"), "identityProviderRef"),
    ("missing group role", "ScimConnection", "okta", lambda s: s["groupBindings"][0].pop("role"), "role"),
    (
        "both saml and oidc",
        "IdentityProvider",
        "okta",
        lambda s: s.update(oidc={"issuer": "https://accounts.example.com", "clientID": "abc"}),
        "spec.oidc",
    ),
    (
        "oidc protocol with saml block",
        "IdentityProvider",
        "okta",
        lambda s: s.update(protocol="OIDC"),
        "spec.oidc",
    ),
    (
        "two metadata sources",
        "IdentityProvider",
        "okta",
        lambda s: s["saml"]["metadata"].update(url="https://idp.example.com/md"),
        "metadata.url",
    ),
    (
        "refreshInterval without url",
        "IdentityProvider",
        "okta",
        lambda s: s["saml"]["metadata"].update(refreshInterval="1h"),
        "refreshInterval",
    ),
    (
        "metadata and manual",
        "IdentityProvider",
        "keycloak",
        lambda s: s["saml"].update(metadata={"url": "https://idp.example.com/md"}),
        "saml.manual",
    ),
    (
        "duplicate group",
        "ScimConnection",
        "okta",
        lambda s: s["groupBindings"].append({"group": "platform-admins", "role": "Viewer"}),
        "platform-admins",
    ),
    ("bad duration", "ScimConnection", "okta", lambda s: s["token"].update(overlap="1 day"), "overlap"),
    (
        "bad duration unit",
        "ScimConnection",
        "okta",
        lambda s: s["token"].update(rotationInterval="90d"),
        "rotationInterval",
    ),
    ("uppercase domain", "SSODomain", "acme", lambda s: s.update(domains=["ACME.com"]), "domains"),
    ("single-label domain", "SSODomain", "acme", lambda s: s.update(domains=["localhost"]), "domains"),
    (
        "duplicate domain",
        "SSODomain",
        "acme",
        lambda s: s.update(domains=["acme.com", "acme.com"]),
        "acme.com",
    ),
    (
        "breakGlass outside domains",
        "SSODomain",
        "acme",
        lambda s: s.update(breakGlassUsers=["root@evil.example"]),
        "breakGlassUsers",
    ),
    ("unknown field", "SSODomain", "acme", lambda s: s.update(enforcment="Required"), "enforcment"),
    (
        "bad fingerprint",
        "IdentityProvider",
        "okta",
        lambda s: s["saml"]["metadata"].update(signingCertificateFingerprint="sha256:zz"),
        "signingCertificateFingerprint",
    ),
    (
        "manual without certificates",
        "IdentityProvider",
        "keycloak",
        lambda s: s["saml"]["manual"].update(certificates=[]),
        "certificates",
    ),
    (
        "bad verification method",
        "SSODomain",
        "acme",
        lambda s: s.update(verification={"method": "HTTP"}),
        "method",
    ),
]


@pytest.mark.parametrize(("what", "kind", "name", "change", "field"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_spec_is_rejected_naming_the_field(
    what: str, kind: str, name: str, change: Any, field: str
) -> None:
    model: type[BaseModel] = KINDS_BY_NAME[kind].spec_model
    spec = _mutate(kind, name, change)
    with pytest.raises(ValidationError) as caught:
        model.model_validate(spec)
    assert field in str(caught.value), f"{what}: {caught.value}"


@pytest.mark.parametrize(
    ("what", "kind", "name", "change"),
    [
        i[:4]
        for i in INVALID
        if i[0]
        in {
            "wrong enum",
            "wrong protocol",
            "missing required",
            "missing group role",
            "bad duration",
            "bad duration unit",
            "uppercase domain",
            "single-label domain",
            "bad fingerprint",
            "manual without certificates",
            "bad verification method",
        }
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else "",
)
def test_schema_level_mistakes_are_also_refused_by_the_crd_schema(
    what: str, kind: str, name: str, change: Any
) -> None:
    # These never reach the operator: the API server refuses them with the openAPIV3Schema alone.
    doc = {
        "apiVersion": API_GROUP_VERSION,
        "kind": kind,
        "metadata": {"name": name},
        "spec": _mutate(kind, name, change),
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(root_schema(kind)).validate(doc)


def test_valid_durations_and_domains_are_accepted() -> None:
    scim = KINDS_BY_NAME["ScimConnection"].spec_model
    for duration in ("0", "90s", "30m", "1h30m", "2160h", "1.5h"):
        scim.model_validate({"token": {"rotationInterval": duration, "overlap": duration}})
    domain = KINDS_BY_NAME["SSODomain"].spec_model
    domain.model_validate(
        {
            "domains": ["xn--bcher-kva.example", "a.b.c.example"],
            "identityProviderRef": {"name": "x"},
            "breakGlassUsers": ["Root@xn--bcher-kva.example"],
        }
    )


def test_quickstart_folder_is_among_the_examples() -> None:
    assert any(label.startswith(str(Path("examples") / "quickstart")) for label, _ in EXAMPLE_OBJECTS)

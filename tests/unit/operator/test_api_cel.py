"""The CRDs' CEL rules evaluated for real (cel-python), and held to the same verdicts as the pydantic models.

The API server applies these rules; the models apply the same rules in Python for `keyplane render` and the
operator. A rule that drifts from its model would let through (or refuse) what the other refuses (or admits).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import yaml
from keyplane_op_helpers import EXAMPLES
from pydantic import ValidationError

from keyplane.api.crds import all_crds
from keyplane.api.kinds import KINDS_BY_NAME

celpy = pytest.importorskip("celpy")
from celpy import celtypes  # noqa: E402


def _lower_ascii(value: Any) -> Any:
    # Kubernetes' CEL strings extension (not in cel-python): lowercase ASCII letters only.
    return celtypes.StringType("".join(c.lower() if c.isascii() else c for c in str(value)))


_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def evaluate(rule: str, value: Any) -> bool:
    if rule not in _PROGRAMS:
        _PROGRAMS[rule] = _ENV.program(_ENV.compile(rule), functions={"lowerAscii": _lower_ascii})
    result = _PROGRAMS[rule].evaluate({"self": celpy.json_to_cel(value)})
    assert isinstance(result, celtypes.BoolType), f"{rule} gave {result!r}"
    return bool(result)


@cache
def _spec_schema(kind: str) -> dict[str, Any]:
    crd = next(c for c in all_crds() if c["spec"]["names"]["kind"] == kind)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def failing_rules(kind: str, spec: dict[str, Any]) -> list[str]:
    """Messages of the CEL rules that fail, each evaluated where it sits, as the API server does."""

    def visit(schema: dict[str, Any], value: Any) -> Iterator[str]:
        for validation in schema.get("x-kubernetes-validations", []):
            if not evaluate(validation["rule"], value):
                yield validation["message"]
        if isinstance(value, dict):
            for key, child in value.items():
                if key in schema.get("properties", {}):
                    yield from visit(schema["properties"][key], child)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for child in value:
                yield from visit(schema["items"], child)

    return list(visit(_spec_schema(kind), spec))


def model_accepts(kind: str, spec: dict[str, Any]) -> bool:
    try:
        KINDS_BY_NAME[kind].spec_model.model_validate(spec)
    except ValidationError:
        return False
    return True


CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
SAML_URL = {"protocol": "SAML", "saml": {"metadata": {"url": "https://idp.example.com/md"}}}
OIDC = {"protocol": "OIDC", "oidc": {"issuer": "https://accounts.example.com", "clientID": "abc"}}
MANUAL = {"entityID": "urn:idp", "ssoURL": "https://idp.example.com/sso", "certificates": [CERT]}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(base), **changes}


CASES: list[tuple[str, str, dict[str, Any], bool]] = [
    ("saml ok", "IdentityProvider", SAML_URL, True),
    ("oidc ok", "IdentityProvider", OIDC, True),
    ("saml without block", "IdentityProvider", {"protocol": "SAML"}, False),
    ("oidc without block", "IdentityProvider", {"protocol": "OIDC"}, False),
    ("saml with oidc too", "IdentityProvider", _with(SAML_URL, oidc=OIDC["oidc"]), False),
    ("oidc with saml too", "IdentityProvider", _with(OIDC, saml=SAML_URL["saml"]), False),
    ("oidc protocol, saml block", "IdentityProvider", _with(SAML_URL, protocol="OIDC"), False),
    (
        "configMapRef",
        "IdentityProvider",
        _with(SAML_URL, saml={"metadata": {"configMapRef": {"name": "md"}}}),
        True,
    ),
    ("inline", "IdentityProvider", _with(SAML_URL, saml={"metadata": {"inline": "<x/>"}}), True),
    ("no metadata source", "IdentityProvider", _with(SAML_URL, saml={"metadata": {}}), False),
    (
        "url and inline",
        "IdentityProvider",
        _with(SAML_URL, saml={"metadata": {"url": "https://a.example/md", "inline": "<x/>"}}),
        False,
    ),
    (
        "all three sources",
        "IdentityProvider",
        _with(
            SAML_URL,
            saml={
                "metadata": {"url": "https://a.example/md", "inline": "<x/>", "configMapRef": {"name": "md"}}
            },
        ),
        False,
    ),
    (
        "refresh with url",
        "IdentityProvider",
        _with(SAML_URL, saml={"metadata": {"url": "https://a.example/md", "refreshInterval": "2h"}}),
        True,
    ),
    (
        "refresh with inline",
        "IdentityProvider",
        _with(SAML_URL, saml={"metadata": {"inline": "<x/>", "refreshInterval": "2h"}}),
        False,
    ),
    ("manual", "IdentityProvider", _with(SAML_URL, saml={"manual": MANUAL}), True),
    (
        "metadata and manual",
        "IdentityProvider",
        _with(SAML_URL, saml={"manual": MANUAL, "metadata": {"inline": "<x/>"}}),
        False,
    ),
    (
        "neither metadata nor manual",
        "IdentityProvider",
        _with(SAML_URL, saml={"signAuthnRequests": False}),
        False,
    ),
    (
        "unique groups",
        "ScimConnection",
        {"groupBindings": [{"group": "a", "role": "Admin"}, {"group": "b", "role": "Admin"}]},
        True,
    ),
    (
        "duplicate groups",
        "ScimConnection",
        {
            "groupBindings": [
                {"group": "a", "role": "Admin"},
                {"group": "b", "role": "Viewer"},
                {"group": "a", "role": "Member"},
            ]
        },
        False,
    ),
    ("no bindings", "ScimConnection", {"groupBindings": []}, True),
    (
        "break glass in domain",
        "SSODomain",
        {
            "domains": ["acme.com", "acme.io"],
            "identityProviderRef": {"name": "okta"},
            "breakGlassUsers": ["root@acme.com", "ops@acme.io"],
        },
        True,
    ),
    (
        "break glass mixed case",
        "SSODomain",
        {
            "domains": ["acme.com"],
            "identityProviderRef": {"name": "okta"},
            "breakGlassUsers": ["Root@ACME.com"],
        },
        True,
    ),
    (
        "break glass outside",
        "SSODomain",
        {
            "domains": ["acme.com"],
            "identityProviderRef": {"name": "okta"},
            "breakGlassUsers": ["root@acme.com", "root@evil.example"],
        },
        False,
    ),
    (
        "break glass subdomain suffix trick",
        "SSODomain",
        {
            "domains": ["acme.com"],
            "identityProviderRef": {"name": "okta"},
            "breakGlassUsers": ["root@notacme.com"],
        },
        False,
    ),
    ("no break glass", "SSODomain", {"domains": ["acme.com"], "identityProviderRef": {"name": "okta"}}, True),
]


@pytest.mark.parametrize(("what", "kind", "spec", "valid"), CASES, ids=[c[0] for c in CASES])
def test_cel_rules_and_model_agree(what: str, kind: str, spec: dict[str, Any], valid: bool) -> None:
    failures = failing_rules(kind, spec)
    assert (not failures) is valid, f"{what}: CEL failures {failures}"
    assert model_accepts(kind, spec) is valid, f"{what}: the pydantic model disagrees with CEL"


def test_a_failing_rule_reports_its_message() -> None:
    failures = failing_rules("IdentityProvider", _with(SAML_URL, oidc=OIDC["oidc"]))
    assert failures == [
        "set spec.saml (and not spec.oidc) when protocol is SAML, "
        "spec.oidc (and not spec.saml) when protocol is OIDC"
    ]


def test_every_example_passes_every_cel_rule() -> None:
    checked = 0
    for file in sorted(EXAMPLES.rglob("*.yaml")):
        for doc in yaml.safe_load_all(file.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in KINDS_BY_NAME:
                assert failing_rules(doc["kind"], doc["spec"]) == [], f"{file}: {doc['metadata']['name']}"
                checked += 1
    assert checked >= 3

"""The documented bundle consumer (examples/consume-bundle) works on a real rendered bundle, and
real bundles match the shipped JSON Schema (docs/bundle.schema.json)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from keyplane.render import run_render
from keyplane.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("consume_example", ROOT / "examples/consume-bundle/consume.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render_quickstart() -> tuple[dict[str, Any], str]:
    out = io.StringIO()
    assert run_render([str(ROOT / "examples/quickstart")], Settings(), NOW, out, io.StringIO()) == 0
    docs = list(yaml.safe_load_all(out.getvalue()))
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "keyplane-identity")
    token_secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "okta-scim-token")
    bundle = json.loads(base64.b64decode(secret["data"]["identity.json"]))
    return bundle, base64.b64decode(token_secret["data"]["token"]).decode()


def test_rendered_bundle_matches_the_schema() -> None:
    bundle, _ = _render_quickstart()
    schema = json.loads((ROOT / "docs/bundle.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(bundle, schema, cls=jsonschema.Draft202012Validator)
    broken = {**bundle, "domains": {"acme.com": {"identityProvider": "okta", "enforcement": "Sometimes",
                                                 "breakGlassUsers": []}}}
    assert not jsonschema.Draft202012Validator(schema).is_valid(broken)


def test_example_consumer_routes_logs_in_checks_tokens_and_roles(tmp_path: Path) -> None:
    consume = _load_example()
    bundle, token = _render_quickstart()
    path = tmp_path / "identity.json"
    path.write_text(json.dumps(bundle))
    bundle = consume.load_bundle(path)

    assert consume.identity_provider_for(bundle, "ann@acme.com") == ("okta", False)
    assert consume.identity_provider_for(bundle, "root@acme.com") == ("okta", True)  # break-glass
    assert consume.identity_provider_for(bundle, "bob@contractors.example") == ("keycloak", True)
    assert consume.identity_provider_for(bundle, "eve@elsewhere.org") == (None, True)

    request = {"https": "on", "http_host": "platform.example.com", "script_name": "/sso/saml/okta/login",
               "get_data": {}, "post_data": {}}
    login_url = consume.saml_auth(bundle, "okta", request).login()
    assert login_url.startswith("https://acme.okta.example/app/acme_keyplane_1/exkDEMO1234567890/sso/saml?")
    assert "Signature=" in login_url  # signAuthnRequests: the SP key from the bundle signs the request

    assert consume.scim_token_valid(bundle, "okta", f"Bearer {token}", NOW)
    assert not consume.scim_token_valid(bundle, "okta", "Bearer wrong", NOW)
    assert not consume.scim_token_valid(bundle, "okta", f"Basic {token}", NOW)
    old = "previous-token-value-0123456789"
    bundle["scim"]["okta"]["tokenHashes"].append(
        {"sha256": hashlib.sha256(old.encode()).hexdigest(), "notAfter": "2026-11-24T19:00:00Z"})
    assert consume.scim_token_valid(bundle, "okta", f"Bearer {old}", NOW)
    assert not consume.scim_token_valid(bundle, "okta", f"Bearer {old}", NOW + timedelta(days=2))

    assert consume.role_for(bundle, "okta", []) == "Viewer"
    assert consume.role_for(bundle, "okta", ["data-engineering"]) == "Member"
    assert consume.role_for(bundle, "okta", ["data-engineering", "platform-admins"]) == "Admin"
    assert consume.role_for(bundle, "okta", ["unbound"]) == "Viewer"

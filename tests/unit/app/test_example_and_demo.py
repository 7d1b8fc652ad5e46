from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import httpx
import pytest

from keyplane.app.demo import build_app, main

from .helpers import OKTA_TOKEN, bundle_dict

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "app" / "app.py"


def load_example() -> object:
    spec = importlib.util.spec_from_file_location("keyplane_example_app", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_example_app_serves_everything(tmp_path: Path) -> None:
    bundle = tmp_path / "identity.json"
    bundle.write_text(json.dumps(bundle_dict()))
    example = load_example()
    _kp, app = example.create_app(str(bundle), f"sqlite:///{tmp_path / 'kp.db'}", "secret")  # type: ignore[attr-defined]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://app.example.com"
    ) as c:
        assert (await c.get("/")).json() == {"user": None, "mirroredUsers": 0}
        r = await c.post("/login", data={"email": "alice@acme.com"})
        assert r.status_code == 303 and r.headers["location"].startswith("/sso/saml/okta/login")
        assert (await c.post("/login", data={"email": "root@acme.com"})).status_code == 501
        r = await c.post(
            "/scim/v2/okta/Users",
            json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a@acme.com"},
            headers={"Authorization": f"Bearer {OKTA_TOKEN}"},
        )
        assert r.status_code == 201
        assert (await c.get("/")).json()["mirroredUsers"] == 1
        assert next(iter(example.USERS.values()))["role"] == "Viewer"  # type: ignore[attr-defined]
        assert (await c.get("/sso/route", params={"email": "b@contoso.com"})).json()[
            "identityProvider"
        ] == "entra"


async def test_demo_app(tmp_path: Path) -> None:
    bundle = tmp_path / "identity.json"
    bundle.write_text(json.dumps(bundle_dict()))
    app = build_app(str(bundle), secret_key="x")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
        page = (await c.get("/", params={"email": "alice@acme.com"})).text
        assert "/sso/saml/okta/login" in page and "/scim/v2/okta" in page
        assert (await c.get("/scim/v2/okta/Users")).status_code == 401


def test_demo_main_refuses_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--bundle", str(tmp_path / "missing.json")])

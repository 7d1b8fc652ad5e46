"""Two replicas of the app in separate processes (uvicorn on 127.0.0.1) on one real PostgreSQL database
(and, for contrast, on one SQLite file).

What a platform running its web app behind a load balancer relies on: a login started on one replica
finishes on the other, an assertion used on one is refused on the other, the IdPs' parallel SCIM
requests neither duplicate users nor lose group members, and the app's change listener fires once
per change. The replicas also start together on an empty database (migrations under a lock).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy

from keyplane.app.tables import resources

from .helpers import OKTA_TOKEN, bundle_dict
from .oidc_provider import CLIENT_ID, CLIENT_SECRET, FakeOidcProvider
from .saml_idp import IDP_SSO, KeyPair, build_response, make_keypair, request_id_of, saml_settings

HERE = Path(__file__).resolve().parent
SCIM = "/scim/v2/okta"
AUTH = {"Authorization": f"Bearer {OKTA_TOKEN}"}
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@dataclass
class Replicas:
    urls: tuple[str, str]
    database_url: str
    changes: Path

    def changes_seen(self) -> list[dict[str, Any]]:
        text = self.changes.read_text() if self.changes.exists() else ""
        return [json.loads(line) for line in text.splitlines()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_serving(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"replica exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/sso/route", params={"email": "a@acme.com"}, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"replica at {url} did not start")


@pytest.fixture(scope="module")
def idp_keys() -> KeyPair:
    return make_keypair("replica-idp")


@pytest.fixture(scope="module", params=["postgresql", "sqlite-file"])
def replicas(
    request: pytest.FixtureRequest,
    idp_keys: KeyPair,
    provider: FakeOidcProvider,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Replicas]:
    """Two replicas on PostgreSQL (the production shape), and on one SQLite file (correct, not fast)."""
    folder = tmp_path_factory.mktemp("replicas")
    document = bundle_dict()
    document["identityProviders"]["okta"]["saml"] = saml_settings(idp_keys)
    # Entra accepts IdP-initiated responses: an unsolicited response can then only be stopped by replay.
    document["identityProviders"]["entra"]["saml"] = saml_settings(idp_keys)
    document["identityProviders"]["entra"]["allowIdPInitiated"] = True
    document["identityProviders"]["corp"] = {
        "protocol": "OIDC",
        "oidc": {"issuer": provider.issuer, "clientID": CLIENT_ID, "clientSecret": CLIENT_SECRET,
                 "redirectURI": "https://app.example.com/sso/oidc/corp/callback"},
    }  # fmt: skip
    document["domains"]["corp.example"] = {"identityProvider": "corp", "enforcement": "Required"}
    bundle = folder / "identity.json"
    bundle.write_text(json.dumps(document))
    if request.param == "postgresql":
        database_url = request.getfixturevalue("postgres_server").create_database("replicas")
    else:
        database_url = f"sqlite:///{folder / 'keyplane.db'}"
    changes = folder / "changes.jsonl"
    processes: list[subprocess.Popen[bytes]] = []
    urls = []
    for name in ("a", "b"):
        port = _free_port()
        env = {**os.environ, "KEYPLANE_BUNDLE": str(bundle), "DATABASE_URL": database_url,
               "KEYPLANE_SECRET_KEY": "shared-secret", "REPLICA": name, "CHANGES_FILE": str(changes)}  # fmt: skip
        command = [sys.executable, "-m", "uvicorn", "--factory", "replica_app:build", "--app-dir", str(HERE),
                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--lifespan", "off"]
        # Both start at once on the empty database: the migrations take turns under the advisory lock.
        with open(folder / f"replica-{name}.log", "wb") as log:
            processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for process, url, name in zip(processes, urls, "ab", strict=True):
            _wait_until_serving(process, url, folder / f"replica-{name}.log")
        yield Replicas((urls[0], urls[1]), database_url, changes)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def test_saml_login_started_on_a_finishes_on_b(replicas: Replicas, idp_keys: KeyPair) -> None:
    a, b = replicas.urls
    async with httpx.AsyncClient() as browser:
        r = await browser.get(f"{a}/sso/saml/okta/login", params={"next": "/dashboard"})
        assert r.status_code == 302 and r.headers["location"].startswith(IDP_SSO)
        request_id = request_id_of(r.headers["location"])
        response = build_response(idp_keys, in_response_to=request_id, groups=("platform-admins",))
        r = await browser.post(f"{b}/sso/saml/okta/acs", data={"SAMLResponse": response, "RelayState": "/x"})
        assert r.status_code == 303, r.text
        assert r.headers["location"] == "/dashboard"
        assert "keyplane_session" in r.cookies
        # The pending login was taken by B: the same browser state finishes nothing on A.
        r = await browser.post(f"{a}/sso/saml/okta/acs", data={"SAMLResponse": response})
        assert r.status_code == 403


async def test_assertion_used_on_a_is_refused_on_b(replicas: Replicas, idp_keys: KeyPair) -> None:
    a, b = replicas.urls
    response = build_response(idp_keys, in_response_to=None, email="bob@contoso.com")
    async with httpx.AsyncClient() as browser:
        r = await browser.post(f"{a}/sso/saml/entra/acs", data={"SAMLResponse": response})
        assert r.status_code == 303, r.text
    async with httpx.AsyncClient() as attacker:
        r = await attacker.post(f"{b}/sso/saml/entra/acs", data={"SAMLResponse": response})
        assert r.status_code == 403 and "replay" in r.text, r.text
        r = await attacker.post(f"{a}/sso/saml/entra/acs", data={"SAMLResponse": response})
        assert r.status_code == 403 and "replay" in r.text, r.text


async def test_oidc_login_started_on_b_finishes_on_a(replicas: Replicas) -> None:
    a, b = replicas.urls
    async with httpx.AsyncClient() as browser:
        r = await browser.get(f"{b}/sso/oidc/corp/login", params={"next": "/home"})
        assert r.status_code == 302, r.text
        pending = browser.cookies.get("keyplane_oidc_corp")
        r = await browser.get(r.headers["location"])  # at the provider, which redirects back with a code
        assert r.status_code == 302
        callback = urlsplit(r.headers["location"])
        r = await browser.get(f"{a}{callback.path}?{callback.query}")
        assert r.status_code == 303, r.text
        assert r.headers["location"] == "/home"
        # The same callback again, login cookie put back, on either replica: the login was taken.
        browser.cookies.set("keyplane_oidc_corp", pending, domain="127.0.0.1", path="/sso/oidc/corp/")
        for url in (a, b):
            r = await browser.get(f"{url}{callback.path}?{callback.query}")
            assert r.status_code == 400 and "replay" in r.text, r.text


def _user(name: str) -> dict[str, Any]:
    return {"schemas": [USER], "userName": name, "emails": [{"value": name.lower(), "primary": True}]}


async def test_concurrent_creates_give_one_user_and_one_conflict(replicas: Replicas) -> None:
    a, b = replicas.urls
    names = [f"race{i}@acme.com" for i in range(12)]
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as client:
        # The same userName to both replicas at once (differing in case: userName is caseExact=false).
        answers = await asyncio.gather(
            *(
                request
                for name in names
                for request in (
                    client.post(f"{a}{SCIM}/Users", json=_user(name)),
                    client.post(f"{b}{SCIM}/Users", json=_user(name.upper())),
                )
            )
        )
    for i, name in enumerate(names):
        pair = answers[2 * i : 2 * i + 2]
        assert sorted(r.status_code for r in pair) == [201, 409], [r.text for r in pair]
        conflict = next(r for r in pair if r.status_code == 409).json()
        assert conflict["scimType"] == "uniqueness"
        engine = sqlalchemy.create_engine(replicas.database_url)
        with engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.select(sqlalchemy.func.count())
                .select_from(resources)
                .where(resources.c.resource_type == "User", resources.c.user_name == name)
            ).scalar_one()
        engine.dispose()
        assert rows == 1, name
    # The listener fired once per created user, on the replica that created it; never for the 409s.
    created = {r.json()["id"]: url for r, url in zip(answers, [a, b] * len(names), strict=True) if r.status_code == 201}
    fired = [c for c in replicas.changes_seen() if c["user"] in created]
    assert sorted(c["user"] for c in fired) == sorted(created)
    for change in fired:
        assert change["action"] == "upsert"
        assert replicas.urls["ab".index(change["replica"])] == created[change["user"]]


def _add_member(user_id: str) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}]}


async def test_concurrent_group_patches_lose_no_member(replicas: Replicas) -> None:
    a, b = replicas.urls
    async with httpx.AsyncClient(headers=AUTH, timeout=60) as client:
        user_ids = []
        for i in range(16):
            r = await client.post(f"{(a, b)[i % 2]}{SCIM}/Users", json=_user(f"member{i}@acme.com"))
            assert r.status_code == 201, r.text
            user_ids.append(r.json()["id"])
        r = await client.post(f"{a}{SCIM}/Groups", json={"schemas": [GROUP], "displayName": "platform-admins"})
        assert r.status_code == 201, r.text
        group = r.json()["id"]
        before = len(replicas.changes_seen())
        # Okta and Entra ID send one PATCH per membership change, in parallel.
        answers = await asyncio.gather(
            *(
                client.patch(f"{(a, b)[i % 2]}{SCIM}/Groups/{group}", json=_add_member(user_id))
                for i, user_id in enumerate(user_ids)
            )
        )
        assert all(r.status_code in (200, 204) for r in answers), [r.text for r in answers]
        r = await client.get(f"{b}{SCIM}/Groups/{group}")
    members = {m["value"] for m in r.json().get("members", [])}
    assert members == set(user_ids)
    # Every PATCH made one version: 1 (created) + 16, and each answer carried its own.
    assert r.json()["meta"]["version"] == f'W/"{1 + len(user_ids)}"'
    assert r.headers["etag"] == f'W/"{1 + len(user_ids)}"'
    assert sorted(int(x.headers["etag"][3:-1]) for x in answers) == list(range(2, 2 + len(user_ids)))
    # One change per member added (its role became Admin), from the replica that served that PATCH.
    fired = replicas.changes_seen()[before:]
    assert collections.Counter(c["user"] for c in fired) == dict.fromkeys(user_ids, 1)
    assert all(c["groups"] == ["platform-admins"] for c in fired)

"""Issue 11's reproduction, refused at both steps: no IdP may provision or log in another IdP's users.

The bundle: ``corp`` owns ``acme.com`` (Required, break-glass ``root@acme.com``) and ``okta`` owns
``contractors.example`` with its own ScimConnection whose ``platform-admins`` group is bound to
``Admin``. (The attacker IdP is called ``okta`` here because the SAML test IdP of ``saml_idp`` is
wired to ``/sso/saml/okta``.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from keyplane.app import Bundle, BundleStore, Keyplane, LoginError, SqlScimStorage, UserChange, resolve_login

from .helpers import ENTRA_TOKEN, OKTA_TOKEN, bundle_dict
from .saml_idp import KeyPair, build_response, make_keypair, request_id_of, saml_settings

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CONTRACTORS = {"Authorization": f"Bearer {OKTA_TOKEN}", "Content-Type": "application/scim+json"}
CORP = {"Authorization": f"Bearer {ENTRA_TOKEN}", "Content-Type": "application/scim+json"}


def attack_bundle(idp_keys: KeyPair | None = None) -> dict[str, Any]:
    document = bundle_dict()
    idps = document["identityProviders"]
    idps["corp"] = idps.pop("entra")
    if idp_keys is not None:
        idps["okta"]["saml"] = saml_settings(idp_keys)
    document["domains"] = {
        "acme.com": {"identityProvider": "corp", "enforcement": "Required", "breakGlassUsers": ["root@acme.com"]},
        "contractors.example": {"identityProvider": "okta", "enforcement": "Optional"},
    }
    document["scim"]["entra"]["identityProvider"] = "corp"
    document["scim"]["entra"]["userIdentifier"] = "email"
    return document


def user(address: str, **extra: Any) -> dict[str, Any]:
    return {"schemas": [USER], "userName": address, "emails": [{"value": address, "primary": True}], **extra}


@pytest.fixture(scope="module")
def idp_keys() -> KeyPair:
    return make_keypair("contractors-idp")


@pytest.fixture
def kp(idp_keys: KeyPair) -> Keyplane:
    return Keyplane(BundleStore.from_bundle(Bundle.from_dict(attack_bundle(idp_keys))), secret_key="s3cret")


@pytest.fixture
async def client(kp: Keyplane) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://app.example.com") as c:
        yield c


def plant(kp: Keyplane, partition: str, address: str, group: str | None = None) -> str:
    """A row written straight into storage, as a SCIM write before this fix could have left it."""
    rt_user, rt_group = kp.scim.provider.resource_types[0], kp.scim.provider.resource_types[1]
    storage = SqlScimStorage(kp.storage, partition, kp.scim.provider, address_guard=lambda data: None)
    with storage.operation():
        created = storage.create(rt_user, kp.scim.provider.model_for(rt_user).model_validate(user(address)))
        if group is not None:
            members = {"schemas": [GROUP], "displayName": group, "members": [{"value": created.id}]}
            storage.create(rt_group, kp.scim.provider.model_for(rt_group).model_validate(members))
    return str(created.id)


async def test_step1_foreign_scim_connection_cannot_create_users_of_another_idps_domain(
    client: httpx.AsyncClient, kp: Keyplane
) -> None:
    r = await client.post("/scim/v2/okta/Users", json=user("alice@acme.com"), headers=CONTRACTORS)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["scimType"] == "invalidValue"
    assert "acme.com belongs to identity provider corp, not okta" in body["detail"]
    r = await client.post("/scim/v2/okta/Users", json=user("root@acme.com"), headers=CONTRACTORS)
    assert r.status_code == 400 and r.json()["scimType"] == "invalidValue"
    assert "break-glass" in r.json()["detail"] and "acme.com" in r.json()["detail"]
    assert kp.storage.list_users("okta", include_deleted=True) == []
    assert kp.refusals.count("scim.invalidValue") == 2


async def test_break_glass_users_are_not_the_owning_idps_to_provision(
    client: httpx.AsyncClient, kp: Keyplane
) -> None:
    r = await client.post("/scim/v2/entra/Users", json=user("ROOT@acme.com"), headers=CORP)
    assert r.status_code == 400 and "break-glass user of acme.com" in r.json()["detail"]
    r = await client.post("/scim/v2/entra/Users", json=user("alice@acme.com"), headers=CORP)
    assert r.status_code == 201, r.text
    assert kp.storage.find_user("entra", "alice@acme.com") is not None


@pytest.mark.parametrize(
    "address",
    ["alice@ACME.com", "alice@acme.com.", "alice@eu.acme.com", "alice\u200b@acme.com", "alice@acme.com@x.io",
     "alice@\u0430cme.com", "alice@\uff41\uff43\uff4d\uff45.com"],
)
async def test_no_spelling_of_a_foreign_address_is_stored(
    client: httpx.AsyncClient, kp: Keyplane, address: str
) -> None:
    r = await client.post("/scim/v2/okta/Users", json=user(address), headers=CONTRACTORS)
    assert r.status_code == 400 and r.json()["scimType"] == "invalidValue", (address, r.text)
    assert kp.storage.list_users("okta", include_deleted=True) == []


async def test_put_and_patch_cannot_move_a_user_into_another_idps_domain(
    client: httpx.AsyncClient, kp: Keyplane
) -> None:
    r = await client.post("/scim/v2/okta/Users", json=user("bob@contractors.example"), headers=CONTRACTORS)
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    base = f"/scim/v2/okta/Users/{uid}"
    r = await client.put(base, json=user("alice@acme.com"), headers=CONTRACTORS)
    assert r.status_code == 400 and "acme.com" in r.json()["detail"], r.text
    for operation in (
        {"op": "replace", "path": "userName", "value": "alice@acme.com"},
        {"op": "add", "path": "emails", "value": [{"value": "alice@acme.com", "type": "work"}]},
        {"op": "replace", "path": 'emails[primary eq true].value', "value": "alice@acme.com"},
        {"op": "replace", "value": {"userName": "root@acme.com"}},
    ):
        r = await client.patch(base, json={"schemas": [PATCH], "Operations": [operation]}, headers=CONTRACTORS)
        assert r.status_code == 400 and r.json()["scimType"] == "invalidValue", (operation, r.text)
    stored = kp.storage.get_user("okta", uid)
    assert stored is not None and stored.email == "bob@contractors.example"
    assert stored.user_name == "bob@contractors.example"
    # Its own addresses can still be changed.
    rename = {"op": "replace", "path": "userName", "value": "B@contractors.example"}
    r = await client.patch(base, json={"schemas": [PATCH], "Operations": [rename]}, headers=CONTRACTORS)
    assert r.status_code in (200, 204), r.text
    assert kp.storage.find_user("okta", "b@contractors.example", "userName") is not None


async def test_deactivation_is_allowed_after_the_domain_moved_to_another_idp() -> None:
    """A user written while its domain was the IdP's can still be deprovisioned (never logged in, though)."""
    kp_before = attack_bundle()
    kp_before["domains"]["acme.com"]["identityProvider"] = "okta"
    store = BundleStore.from_bundle(Bundle.from_dict(kp_before))
    kp = Keyplane(store, secret_key="s3cret")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://a.example") as c:
        r = await c.post("/scim/v2/okta/Users", json=user("dave@acme.com"), headers=CONTRACTORS)
        assert r.status_code == 201, r.text
        uid = r.json()["id"]
        store._bundle = Bundle.from_dict(attack_bundle())  # acme.com now belongs to corp
        with pytest.raises(LoginError):
            resolve_login(kp.bundle, kp.storage, "okta", "dave@acme.com", [])
        groups = {"op": "replace", "path": "displayName", "value": "Dave"}
        r = await c.patch(f"/scim/v2/okta/Users/{uid}", json={"schemas": [PATCH], "Operations": [groups]},
                          headers=CONTRACTORS)
        assert r.status_code == 400, r.text
        off = {"op": "replace", "path": "active", "value": False}
        r = await c.patch(f"/scim/v2/okta/Users/{uid}", json={"schemas": [PATCH], "Operations": [off]},
                          headers=CONTRACTORS)
        assert r.status_code in (200, 204), r.text
        assert not kp.storage.get_user("okta", uid).active  # type: ignore[union-attr]


def test_step2_login_refused_even_for_a_user_stored_in_the_idps_partition(kp: Keyplane) -> None:
    """The cause of issue 11: a user found in the IdP's SCIM partition was returned before the domain check."""
    plant(kp, "okta", "alice@acme.com", group="platform-admins")
    plant(kp, "okta", "root@acme.com", group="platform-admins")
    assert kp.storage.find_user("okta", "alice@acme.com").role == "Admin"  # type: ignore[union-attr]
    for address in ("alice@acme.com", "root@acme.com", "Alice@ACME.com."):
        with pytest.raises(LoginError, match=r"acme\.com belongs to identity provider corp"):
            resolve_login(kp.bundle, kp.storage, "okta", address, ["platform-admins"])
    # The owner logs its own users in.
    assert resolve_login(kp.bundle, kp.storage, "corp", "alice@acme.com", []).email == "alice@acme.com"


async def test_step2_saml_assertion_of_the_foreign_idp_is_refused(
    client: httpx.AsyncClient, kp: Keyplane, idp_keys: KeyPair
) -> None:
    plant(kp, "okta", "alice@acme.com", group="platform-admins")
    for address in ("alice@acme.com", "root@acme.com"):
        r = await client.get("/sso/saml/okta/login", params={"email": address, "next": "/"})
        request_id = request_id_of(r.headers["location"])
        response = build_response(idp_keys, in_response_to=request_id, email=address, groups=("platform-admins",))
        r = await client.post("/sso/saml/okta/acs", data={"SAMLResponse": response, "RelayState": "/"})
        assert r.status_code == 403, r.text
        assert "acme.com belongs to identity provider corp" in r.text
        assert r.cookies.get("keyplane_session") is None
    assert kp.refusals.count("login.domain_not_owned") == 2
    # A contractor logs in.
    r = await client.get("/sso/saml/okta/login", params={"email": "bob@contractors.example", "next": "/"})
    response = build_response(
        idp_keys, in_response_to=request_id_of(r.headers["location"]), email="Bob@Contractors.example"
    )
    r = await client.post("/sso/saml/okta/acs", data={"SAMLResponse": response, "RelayState": "/"})
    assert r.status_code == 303, r.text


async def test_connection_without_identity_provider_cannot_write_claimed_domains() -> None:
    """A provisioning-only connection (no identityProviderRef) writes only unclaimed domains."""
    document = attack_bundle()
    document["scim"]["okta"]["identityProvider"] = None
    kp = Keyplane(BundleStore.from_bundle(Bundle.from_dict(document)), secret_key="s3cret")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://a.example") as c:
        codes = []
        for address in ("alice@acme.com", "bob@contractors.example", "carol@elsewhere.org", "bad@@x.org"):
            r = await c.post("/scim/v2/okta/Users", json=user(address), headers=CONTRACTORS)
            codes.append(r.status_code)
    assert codes == [400, 400, 201, 400]


async def test_bulk_operations_go_through_the_same_refusal(client: httpx.AsyncClient, kp: Keyplane) -> None:
    bulk = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": user("alice@acme.com")},
            {"method": "POST", "path": "/Users", "bulkId": "b", "data": user("bob@contractors.example")},
        ],
    }
    r = await client.post("/scim/v2/okta/Bulk", json=bulk, headers=CONTRACTORS)
    assert r.status_code == 200, r.text
    statuses = [str(op["status"]) for op in r.json()["Operations"]]
    assert statuses == ["400", "201"], r.text
    assert [u.email for u in kp.storage.list_users("okta")] == ["bob@contractors.example"]


def handed_over(break_glass: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Bundles before and after ``acme.com``'s alice stops being okta's: the domain moves to corp, or
    (``break_glass``) alice becomes one of acme.com's break-glass users."""
    before = attack_bundle()
    before["domains"]["acme.com"] = {"identityProvider": "okta", "enforcement": "Required", "breakGlassUsers": []}
    after = attack_bundle()
    if break_glass:
        after["domains"]["acme.com"] = {
            "identityProvider": "okta", "enforcement": "Required", "breakGlassUsers": ["alice@acme.com"]
        }
    return before, after


@pytest.mark.parametrize("break_glass", [False, True], ids=["domain-handed-over", "made-break-glass"])
async def test_former_owner_can_neither_raise_nor_report_a_user_it_no_longer_owns(break_glass: bool) -> None:
    """Review reproduction: after the hand-over, the former owner's connection put alice into an Admin group
    (the app heard ``upsert alice@acme.com Admin``) and deleted her (the app heard ``deactivate``)."""
    before, after = handed_over(break_glass)
    store = BundleStore.from_bundle(Bundle.from_dict(before))
    kp = Keyplane(store, secret_key="s3cret")
    heard: list[UserChange] = []
    kp.add_listener(heard.append)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://a.example") as c:
        r = await c.post("/scim/v2/okta/Users", json=user("alice@acme.com"), headers=CONTRACTORS)
        assert r.status_code == 201, r.text
        alice = r.json()["id"]
        r = await c.post("/scim/v2/okta/Groups", json={"schemas": [GROUP], "displayName": "data-engineering"},
                         headers=CONTRACTORS)
        assert r.status_code == 201, r.text
        existing = r.json()["id"]
        assert [(h.action, h.login) for h in heard] == [("upsert", "alice@acme.com")]
        heard.clear()
        store._bundle = Bundle.from_dict(after)

        admins = {"schemas": [GROUP], "displayName": "platform-admins", "members": [{"value": alice}]}
        r = await c.post("/scim/v2/okta/Groups", json=admins, headers=CONTRACTORS)
        assert r.status_code == 400 and r.json()["scimType"] == "invalidValue", r.text
        assert "acme.com" in r.json()["detail"]
        add = {"op": "add", "path": "members", "value": [{"value": alice}]}
        r = await c.patch(f"/scim/v2/okta/Groups/{existing}", json={"schemas": [PATCH], "Operations": [add]},
                          headers=CONTRACTORS)
        assert r.status_code == 400 and r.json()["scimType"] == "invalidValue", r.text
        r = await c.put(f"/scim/v2/okta/Groups/{existing}", headers=CONTRACTORS, json={
            "schemas": [GROUP], "displayName": "data-engineering", "members": [{"value": alice}]})
        assert r.status_code == 400 and r.json()["scimType"] == "invalidValue", r.text
        assert [g.member_ids for g in kp.storage.list_groups("okta")] == [()]

        # Deprovisioning is not stuck, but the app does not hear of it: okta's alice is not the app's to change.
        r = await c.delete(f"/scim/v2/okta/Users/{alice}", headers=CONTRACTORS)
        assert r.status_code == 204, r.text
        assert not kp.storage.get_user("okta", alice, include_deleted=True).active  # type: ignore[union-attr]
    assert heard == []
    assert kp.refusals.count("scim.foreign_user_change") == 1


async def test_membership_change_of_a_user_moved_away_is_not_reported() -> None:
    """Alice joined a group while okta owned acme.com; after the hand-over, removing her is stored, not reported."""
    before, after = handed_over(break_glass=False)
    store = BundleStore.from_bundle(Bundle.from_dict(before))
    kp = Keyplane(store, secret_key="s3cret")
    heard: list[UserChange] = []
    kp.add_listener(heard.append)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://a.example") as c:
        alice = (await c.post("/scim/v2/okta/Users", json=user("alice@acme.com"), headers=CONTRACTORS)).json()["id"]
        bob = (await c.post("/scim/v2/okta/Users", json=user("bob@contractors.example"), headers=CONTRACTORS)).json()
        admins = {"schemas": [GROUP], "displayName": "platform-admins", "members": [{"value": alice}]}
        group = (await c.post("/scim/v2/okta/Groups", json=admins, headers=CONTRACTORS)).json()["id"]
        heard.clear()
        store._bundle = Bundle.from_dict(after)
        r = await c.put(f"/scim/v2/okta/Groups/{group}", headers=CONTRACTORS, json={
            "schemas": [GROUP], "displayName": "platform-admins", "members": [{"value": bob["id"]}]})
        assert r.status_code == 200, r.text
    assert [(h.action, h.login, h.user.role) for h in heard] == [("upsert", "bob@contractors.example", "Admin")]


def test_login_refuses_a_stored_user_with_an_address_of_another_idp(kp: Keyplane) -> None:
    """On a userName connection the login matches ``userName``; a stored email of another IdP's domain
    (stored before a hand-over) makes the stored user unusable: refused, not logged in as someone else."""
    document = attack_bundle()
    document["scim"]["okta"]["userIdentifier"] = "userName"
    bundle = Bundle.from_dict(document)
    storage = SqlScimStorage(kp.storage, "okta", kp.scim.provider, address_guard=lambda data: None)
    rt_user = kp.scim.provider.resource_types[0]
    mixed = {**user("carol@contractors.example"), "emails": [{"value": "carol@acme.com", "primary": True}]}
    with storage.operation():
        storage.create(rt_user, kp.scim.provider.model_for(rt_user).model_validate(mixed))
    with pytest.raises(LoginError, match=r"stored user's emails: acme\.com belongs to identity provider corp"):
        resolve_login(bundle, kp.storage, "okta", "carol@contractors.example", [])


async def test_change_login_is_the_key_login_returns_on_a_username_connection() -> None:
    """``UserChange.login`` and ``LoginResult.email`` are the same key, also when the primary email differs."""
    document = attack_bundle()
    document["scim"]["okta"]["userIdentifier"] = "userName"
    kp = Keyplane(BundleStore.from_bundle(Bundle.from_dict(document)), secret_key="s3cret")
    heard: list[UserChange] = []
    kp.add_listener(heard.append)
    body = {**user("Dan@Contractors.example"), "emails": [{"value": "dan.smith@contractors.example", "primary": True}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=kp.asgi()), base_url="https://a.example") as c:
        r = await c.post("/scim/v2/okta/Users", json=body, headers=CONTRACTORS)
        assert r.status_code == 201, r.text
    result = resolve_login(kp.bundle, kp.storage, "okta", "dan@contractors.example", [])
    assert result.provisioned
    assert [h.login for h in heard] == [result.email] == ["dan@contractors.example"]
    assert heard[0].user.email == "dan.smith@contractors.example"

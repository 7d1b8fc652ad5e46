"""Replays of what Okta and Microsoft Entra ID send when they provision into an app.

Written from their public SCIM 2.0 documentation (Okta "SCIM 2.0 protocol reference" and
Entra "Tutorial: develop and plan provisioning for a SCIM endpoint" / "known issues").
"""

from __future__ import annotations

import httpx

from keyplane.app import Keyplane, LoginError, UserChange, resolve_login

from .helpers import ENTRA_TOKEN, OKTA_TOKEN

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
OKTA = {"Authorization": f"Bearer {OKTA_TOKEN}", "Content-Type": "application/scim+json; charset=utf-8"}
ENTRA = {"Authorization": f"Bearer {ENTRA_TOKEN}", "Content-Type": "application/scim+json"}


def okta_user(active: bool = True, given: str = "John") -> dict[str, object]:
    return {
        "schemas": [USER],
        "userName": "jdoe@acme.com",
        "name": {"givenName": given, "familyName": "Doe"},
        "emails": [{"primary": True, "value": "jdoe@acme.com", "type": "work"}],
        "displayName": f"{given} Doe",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": active,
    }


async def test_okta_provisioning_group_push_and_deactivation(
    client: httpx.AsyncClient, keyplane: Keyplane, changes: list[UserChange]
) -> None:
    base = "/scim/v2/okta"
    # 1. Okta checks whether the user exists.
    r = await client.get(
        f"{base}/Users",
        params={"filter": 'userName eq "jdoe@acme.com"', "startIndex": "1", "count": "100"},
        headers=OKTA,
    )
    assert r.status_code == 200 and r.json()["totalResults"] == 0
    # 2. Create.
    r = await client.post(f"{base}/Users", json=okta_user(), headers=OKTA)
    assert r.status_code == 201, r.text
    user = r.json()
    uid = user["id"]
    assert user["userName"] == "jdoe@acme.com" and "password" not in user
    assert r.headers["location"].endswith(f"{base}/Users/{uid}")
    # 3. Read back, then the profile update by PUT.
    r = await client.get(f"{base}/Users/{uid}", headers=OKTA)
    assert r.status_code == 200 and r.json()["name"]["givenName"] == "John"
    r = await client.put(f"{base}/Users/{uid}", json={**okta_user(given="Johnny"), "id": uid}, headers=OKTA)
    assert r.status_code == 200, r.text
    assert r.json()["displayName"] == "Johnny Doe"
    stored = keyplane.storage.find_user("okta", "JDoe@acme.com")
    assert stored is not None and stored.active and stored.role == "Viewer" and stored.groups == ()

    # 4. Group push: create the group, then PATCH its members.
    r = await client.post(
        f"{base}/Groups",
        json={"schemas": [GROUP], "displayName": "platform-admins", "members": []},
        headers=OKTA,
    )
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    r = await client.patch(
        f"{base}/Groups/{gid}",
        json={
            "schemas": [PATCH],
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": uid, "display": "jdoe@acme.com"}]}
            ],
        },
        headers=OKTA,
    )
    assert r.status_code in (200, 204), r.text
    r = await client.get(
        f"{base}/Groups", params={"filter": 'displayName eq "platform-admins"'}, headers=OKTA
    )
    assert r.json()["totalResults"] == 1
    assert [m["value"] for m in r.json()["Resources"][0]["members"]] == [uid]
    user_now = keyplane.storage.find_user("okta", "jdoe@acme.com")
    assert user_now is not None and user_now.groups == ("platform-admins",) and user_now.role == "Admin"
    r = await client.get(f"{base}/Users/{uid}", headers=OKTA)
    assert [g["display"] for g in r.json()["groups"]] == ["platform-admins"]
    assert changes[-1].action == "upsert" and changes[-1].user.role == "Admin"

    # 5. Rename pushed group (path-less replace carrying the id): now unbound -> grants nothing.
    r = await client.patch(
        f"{base}/Groups/{gid}",
        json={
            "schemas": [PATCH],
            "Operations": [{"op": "replace", "value": {"id": gid, "displayName": "platform-admins-old"}}],
        },
        headers=OKTA,
    )
    assert r.status_code in (200, 204), r.text
    assert keyplane.storage.find_user("okta", "jdoe@acme.com").role == "Viewer"  # type: ignore[union-attr]
    r = await client.patch(
        f"{base}/Groups/{gid}",
        json={
            "schemas": [PATCH],
            "Operations": [{"op": "replace", "value": {"id": gid, "displayName": "platform-admins"}}],
        },
        headers=OKTA,
    )
    assert keyplane.storage.find_user("okta", "jdoe@acme.com").role == "Admin"  # type: ignore[union-attr]

    # 6. Membership change: remove with a value filter in the path.
    r = await client.patch(
        f"{base}/Groups/{gid}",
        json={"schemas": [PATCH], "Operations": [{"op": "remove", "path": f'members[value eq "{uid}"]'}]},
        headers=OKTA,
    )
    assert r.status_code in (200, 204), r.text
    user_now = keyplane.storage.find_user("okta", "jdoe@acme.com")
    assert user_now is not None and user_now.groups == () and user_now.role == "Viewer"
    await client.patch(
        f"{base}/Groups/{gid}",
        json={
            "schemas": [PATCH],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": uid}]}],
        },
        headers=OKTA,
    )

    # 7. Deactivation by PUT with active false (deprovisionAction Deactivate: kept, blocked).
    r = await client.put(
        f"{base}/Users/{uid}", json={**okta_user(active=False, given="Johnny"), "id": uid}, headers=OKTA
    )
    assert r.status_code == 200 and r.json()["active"] is False
    blocked = keyplane.storage.find_user("okta", "jdoe@acme.com")
    assert blocked is not None and not blocked.active and blocked.role is None
    assert changes[-1].action == "deactivate" and changes[-1].user.email == "jdoe@acme.com"
    try:
        resolve_login(keyplane.bundle, keyplane.storage, "okta", "jdoe@acme.com", [])
        raise AssertionError("a deactivated user logged in")
    except LoginError as exc:
        assert "deprovisioned" in exc.reason
    # Reactivation through a path-less PATCH.
    r = await client.patch(
        f"{base}/Users/{uid}",
        json={"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": True}}]},
        headers=OKTA,
    )
    assert r.status_code in (200, 204)
    assert keyplane.storage.find_user("okta", "jdoe@acme.com").role == "Admin"  # type: ignore[union-attr]

    # 8. DELETE under deprovisionAction Deactivate: gone from SCIM, kept (blocked) in the app.
    r = await client.delete(f"{base}/Users/{uid}", headers=OKTA)
    assert r.status_code == 204
    assert (await client.get(f"{base}/Users/{uid}", headers=OKTA)).status_code == 404
    kept = keyplane.storage.find_user("okta", "jdoe@acme.com")
    assert kept is not None and kept.deleted and not kept.active
    group = (await client.get(f"{base}/Groups/{gid}", headers=OKTA)).json()
    assert not group.get("members")
    # The IdP may create the same user again later.
    r = await client.post(f"{base}/Users", json=okta_user(), headers=OKTA)
    assert r.status_code == 201
    assert keyplane.storage.find_user("okta", "jdoe@acme.com").active  # type: ignore[union-attr]
    assert (await client.delete(f"{base}/Groups/{gid}", headers=OKTA)).status_code == 204


def entra_user() -> dict[str, object]:
    return {
        "schemas": [USER, ENTERPRISE],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee@contoso.com",
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": "Test_User_fd0ea19b@contoso.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        ENTERPRISE: {"employeeNumber": "1234", "department": "Finance", "manager": "mgr-1"},
    }


async def test_entra_provisioning_dialect(
    client: httpx.AsyncClient, keyplane: Keyplane, changes: list[UserChange]
) -> None:
    base = "/scim/v2/entra"
    q = "aadOptscim062020"
    # Entra's connection test: a user that does not exist.
    r = await client.get(f"{base}/Users?{q}&filter=userName+eq+%22non-existent%20user%22", headers=ENTRA)
    assert r.status_code == 200 and r.json()["totalResults"] == 0
    r = await client.post(f"{base}/Users?{q}", json=entra_user(), headers=ENTRA)
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    assert r.json()[ENTERPRISE]["manager"]["value"] == "mgr-1"
    r = await client.get(
        f"{base}/Users?{q}&filter=externalId+eq+%220a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef%22", headers=ENTRA
    )
    assert r.json()["totalResults"] == 1
    # Capitalised ops, filter path that creates the entry, the manager as a bare string.
    r = await client.patch(
        f"{base}/Users/{uid}?{q}",
        json={
            "schemas": [PATCH],
            "Operations": [
                {"op": "Replace", "path": "displayName", "value": "Jane Contoso"},
                {"op": "Add", "path": 'phoneNumbers[type eq "work"].value', "value": "+1 555 0100"},
                {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "jane@contoso.com"},
                {"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": "mgr-2"},
                {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Engineering"},
            ],
        },
        headers=ENTRA,
    )
    assert r.status_code in (200, 204), r.text
    user = (await client.get(f"{base}/Users/{uid}", headers=ENTRA)).json()
    assert user["displayName"] == "Jane Contoso"
    assert user["phoneNumbers"] == [{"type": "work", "value": "+1 555 0100"}]
    assert user["emails"][0]["value"] == "jane@contoso.com"
    assert user[ENTERPRISE]["manager"]["value"] == "mgr-2" and user[ENTERPRISE]["department"] == "Engineering"
    # userIdentifier is userName for this connection.
    assert keyplane.storage.find_user("entra", "test_user_ab6490ee@contoso.com", "userName") is not None
    # PATCH without path.
    r = await client.patch(
        f"{base}/Users/{uid}",
        json={
            "schemas": [PATCH],
            "Operations": [{"op": "replace", "value": {"name.givenName": "Jane", "name.familyName": "Doe"}}],
        },
        headers=ENTRA,
    )
    assert r.status_code in (200, 204), r.text
    user = (await client.get(f"{base}/Users/{uid}", headers=ENTRA)).json()
    assert user["name"]["givenName"] == "Jane" and user["name"]["familyName"] == "Doe"

    # Groups: lookup excluding members, create, add and remove members Entra's way.
    r = await client.get(
        f"{base}/Groups?excludedAttributes=members&filter=displayName+eq+%22Platform%20Admins%22",
        headers=ENTRA,
    )
    assert r.json()["totalResults"] == 0
    r = await client.post(
        f"{base}/Groups",
        json={
            "schemas": [GROUP],
            "externalId": "8aa1a0c0",
            "displayName": "Platform Admins",
            "meta": {"resourceType": "Group"},
            "members": [],
        },
        headers=ENTRA,
    )
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    r = await client.post(
        f"{base}/Groups", json={"schemas": [GROUP], "displayName": "Finance"}, headers=ENTRA
    )
    finance = r.json()["id"]
    for group in (gid, finance):
        r = await client.patch(
            f"{base}/Groups/{group}",
            json={
                "schemas": [PATCH],
                "Operations": [{"op": "Add", "path": "members", "value": [{"value": uid}]}],
            },
            headers=ENTRA,
        )
        assert r.status_code in (200, 204), r.text
    user_now = keyplane.storage.find_user("entra", "test_user_ab6490ee@contoso.com", "userName")
    assert user_now is not None and user_now.role == "Admin"
    assert user_now.groups == ("Finance", "Platform Admins")
    r = await client.patch(
        f"{base}/Groups/{gid}",
        json={
            "schemas": [PATCH],
            "Operations": [{"op": "Remove", "path": "members", "value": [{"value": uid}]}],
        },
        headers=ENTRA,
    )
    assert r.status_code in (200, 204), r.text
    # Finance is unbound: unboundGroupRole Member beats defaultUserRole Viewer.
    user_now = keyplane.storage.find_user("entra", "test_user_ab6490ee@contoso.com", "userName")
    assert user_now is not None and user_now.groups == ("Finance",) and user_now.role == "Member"

    # Disable: active as the string "False". deprovisionAction Delete -> the app deletes its user.
    r = await client.patch(
        f"{base}/Users/{uid}?{q}",
        json={"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]},
        headers=ENTRA,
    )
    assert r.status_code in (200, 204), r.text
    assert (await client.get(f"{base}/Users/{uid}", headers=ENTRA)).json()["active"] is False
    assert changes[-1].action == "delete" and changes[-1].user.user_name == "Test_User_ab6490ee@contoso.com"
    # Hard delete after the soft-delete period.
    r = await client.delete(f"{base}/Users/{uid}", headers=ENTRA)
    assert r.status_code == 204
    assert keyplane.storage.find_user("entra", "test_user_ab6490ee@contoso.com", "userName") is None
    assert (await client.get(f"{base}/Users/{uid}", headers=ENTRA)).status_code == 404


async def test_connections_are_partitioned(client: httpx.AsyncClient, keyplane: Keyplane) -> None:
    r = await client.post("/scim/v2/okta/Users", json=okta_user(), headers=OKTA)
    assert r.status_code == 201
    r = await client.get("/scim/v2/entra/Users", headers=ENTRA)
    assert r.json()["totalResults"] == 0
    # The Okta token does not open the Entra endpoint.
    r = await client.get("/scim/v2/entra/Users", headers=OKTA)
    assert r.status_code == 401
    # Entra's connection cannot write an acme.com user (okta owns acme.com): 400, nothing stored.
    # (This test used to show the same userName stored in both partitions: that was the hole of
    # issue 11, a foreign IdP provisioning another IdP's users.)
    r = await client.post(
        "/scim/v2/entra/Users", json={"schemas": [USER], "userName": "jdoe@acme.com"}, headers=ENTRA
    )
    assert r.status_code == 400
    assert r.json()["scimType"] == "invalidValue" and "acme.com" in r.json()["detail"]
    assert keyplane.storage.list_users("entra") == []
    r = await client.post("/scim/v2/okta/Users", json=okta_user(), headers=OKTA)
    assert r.status_code == 409


async def test_pagination_and_filters(client: httpx.AsyncClient) -> None:
    for i in range(7):
        r = await client.post(
            "/scim/v2/okta/Users",
            json={
                "schemas": [USER],
                "userName": f"u{i}@acme.com",
                "externalId": f"ext-{i}",
                "displayName": f"User {i}",
            },
            headers=OKTA,
        )
        assert r.status_code == 201
    r = await client.get("/scim/v2/okta/Users", params={"startIndex": "3", "count": "2"}, headers=OKTA)
    body = r.json()
    assert body["totalResults"] == 7 and body["startIndex"] == 3 and body["itemsPerPage"] == 2
    assert [u["userName"] for u in body["Resources"]] == ["u2@acme.com", "u3@acme.com"]
    for flt, expected in [
        ('externalId eq "ext-4"', ["u4@acme.com"]),
        ('displayName eq "user 5"', ["u5@acme.com"]),
        ('userName eq "U6@ACME.COM"', ["u6@acme.com"]),
        ('userName sw "u1"', ["u1@acme.com"]),
    ]:
        r = await client.get("/scim/v2/okta/Users", params={"filter": flt}, headers=OKTA)
        assert [u["userName"] for u in r.json()["Resources"]] == expected, flt
    for path in ("ServiceProviderConfig", "Schemas", "ResourceTypes"):
        r = await client.get(f"/scim/v2/okta/{path}", headers=OKTA)
        assert r.status_code == 200, path
    schemas = {s["id"] for s in (await client.get("/scim/v2/okta/Schemas", headers=OKTA)).json()["Resources"]}
    assert ENTERPRISE in schemas

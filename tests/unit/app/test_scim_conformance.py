"""scim2-tester's full RFC 7643/7644 check suite against the SCIM app, in-process."""

from __future__ import annotations

import datetime
from collections import Counter

from scim2_client.engines.wsgi import WSGISCIMClient
from scim2_tester import check_server
from scim2_tester.utils import Status

from keyplane.app import Bundle, BundleStore, ScimRouter, Storage

from .helpers import OKTA_OLD_TOKEN, OKTA_TOKEN, AsgiAsWsgi, bundle_dict


def test_scim2_tester_passes_every_check(storage: Storage) -> None:
    """The whole suite, on SQLite and on PostgreSQL (the ``storage`` fixture's two databases).

    scim2-tester writes users of random domains (<uuid>.com) that no SSODomain claims: only a
    connection without an identityProviderRef may write those (keyplane.policy.access.may_provision).
    """
    document = bundle_dict()
    document["scim"]["okta"]["identityProvider"] = None
    router = ScimRouter(BundleStore.from_bundle(Bundle.from_dict(document)), storage)
    bridge = AsgiAsWsgi(router)
    try:
        client = WSGISCIMClient(
            bridge,
            base_url="http://localhost/scim/v2/okta",
            headers={"Authorization": f"Bearer {OKTA_TOKEN}"},
        )
        results = check_server(client)
    finally:
        bridge.close()
    failures = [(r.title, r.reason) for r in results if r.status != Status.SUCCESS]
    assert failures == []
    assert len(results) >= 135
    print(f"scim2-tester: {len(results)} checks, {Counter(r.status.name for r in results)}")


def test_token_rotation_overlap() -> None:
    now = [datetime.datetime(2026, 11, 24, 9, 0, tzinfo=datetime.UTC)]
    router = ScimRouter(
        BundleStore.from_bundle(Bundle.from_dict(bundle_dict())), Storage(), clock=lambda: now[0]
    )
    bridge = AsgiAsWsgi(router)

    def status(token: str | None, path: str = "/Users") -> int:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        client = WSGISCIMClient(bridge, base_url="http://localhost/scim/v2/okta", headers=headers)
        return client.request("GET", path).status_code

    try:
        # During the overlap (the old token's notAfter is 10:00) both tokens work.
        assert status(OKTA_TOKEN) == 200
        assert status(OKTA_OLD_TOKEN) == 200
        now[0] = datetime.datetime(2026, 11, 24, 10, 0, 1, tzinfo=datetime.UTC)
        assert status(OKTA_TOKEN) == 200
        assert status(OKTA_OLD_TOKEN) == 401
        assert status("not-a-token") == 401
        assert status(None) == 401
        # RFC 7643 §5: the service provider configuration needs no authentication.
        assert status(None, "/ServiceProviderConfig") == 200
        client = WSGISCIMClient(
            bridge, base_url="http://localhost/scim/v2/okta", headers={"Authorization": "Basic b2t0YTp4"}
        )
        response = client.request("GET", "/Users")
        assert response.status_code == 401
        assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    finally:
        bridge.close()

"""The shared login state and replay store: single use, expiry, cleanup (no unbounded growth),
one winner among concurrent uses; on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import datetime
import threading

import pytest

from keyplane.app import LoginStateStore, SqlReplayCache, Storage
from keyplane.app.replay import id_token_identifier

from .conftest import FakeClock


def test_an_identifier_is_accepted_once_until_it_expires(storage: Storage, clock: FakeClock) -> None:
    replay = SqlReplayCache(storage, clock=clock, skew=datetime.timedelta(minutes=5))
    expiry = clock() + datetime.timedelta(minutes=5)
    assert replay.remember("saml:okta:_a1", expiry)
    assert not replay.remember("saml:okta:_a1", expiry)
    assert replay.remember("saml:entra:_a1", expiry)  # another IdP's namespace
    clock.advance(minutes=9)  # NotOnOrAfter + skew not yet passed
    assert not replay.remember("saml:okta:_a1", expiry)
    clock.advance(minutes=2)
    assert replay.remember("saml:okta:_a1", clock() + datetime.timedelta(minutes=5))


def test_expired_identifiers_are_deleted(storage: Storage, clock: FakeClock) -> None:
    replay = SqlReplayCache(storage, clock=clock, skew=datetime.timedelta(minutes=5))
    for i in range(200):
        assert replay.remember(f"saml:okta:_a{i}", clock() + datetime.timedelta(minutes=5))
    assert len(replay) == 200
    clock.advance(minutes=11)
    assert replay.remember("saml:okta:fresh", clock() + datetime.timedelta(minutes=5))
    assert len(replay) == 1
    # Without an expiry of its own (an ID token without exp), an identifier is kept max_age + skew.
    assert replay.remember("oidc:corp:x", None)
    clock.advance(minutes=66)
    assert replay.remember("oidc:corp:y", None)
    assert len(replay) == 1


def test_concurrent_uses_of_one_identifier_have_one_winner(storage: Storage, clock: FakeClock) -> None:
    replay = SqlReplayCache(storage, clock=clock)
    start = threading.Barrier(8)
    results: list[bool] = []

    def use() -> None:
        start.wait()
        results.append(replay.remember("saml:okta:_raced", None))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False] * 7 + [True]


def test_id_token_identifier_uses_jti_else_the_claims_and_exp() -> None:
    claims = {"iss": "https://idp", "sub": "u1", "aud": "c", "iat": 1000, "exp": 1300, "nonce": "n"}
    key, expiry = id_token_identifier("corp", claims)
    assert key.startswith("oidc:corp:claims:")
    assert expiry == datetime.datetime.fromtimestamp(1300, datetime.UTC)
    assert id_token_identifier("corp", {**claims, "nonce": "other"})[0] != key
    assert id_token_identifier("corp", {**claims, "jti": "j1"})[0] == "oidc:corp:jti:https://idp:j1"


def test_a_pending_login_is_taken_once(storage: Storage, clock: FakeClock) -> None:
    logins = LoginStateStore(storage, clock=clock)
    handle = logins.put("oidc:corp", {"state": "s", "nonce": "n", "verifier": "v", "next": "/"})
    assert logins.take("saml:corp", handle) is None  # started for another flow
    assert logins.take("oidc:corp", handle) == {"state": "s", "nonce": "n", "verifier": "v", "next": "/"}
    assert logins.take("oidc:corp", handle) is None
    assert logins.take("oidc:corp", "made-up") is None


def test_pending_logins_expire_and_are_deleted(storage: Storage, clock: FakeClock) -> None:
    logins = LoginStateStore(storage, clock=clock, max_age=600)
    handles = [logins.put("saml:okta", {"rid": f"_r{i}", "next": "/"}) for i in range(50)]
    clock.advance(minutes=9)
    assert logins.take("saml:okta", handles[0]) == {"rid": "_r0", "next": "/"}
    clock.advance(minutes=2)
    assert logins.take("saml:okta", handles[1]) is None  # expired
    assert len(logins) == 48
    logins.put("saml:okta", {"rid": "_new", "next": "/"})
    assert len(logins) == 1


def test_two_instances_on_one_database_share_the_state(database_url: str, clock: FakeClock) -> None:
    """Two app instances (separate engines) on one database, as two replicas are."""
    if database_url == "sqlite://":
        pytest.skip("an in-memory SQLite database belongs to one engine")
    first, second = Storage(database_url), Storage(database_url)
    try:
        handle = LoginStateStore(first, clock=clock).put("saml:okta", {"rid": "_r", "next": "/"})
        assert LoginStateStore(second, clock=clock).take("saml:okta", handle) == {"rid": "_r", "next": "/"}
        assert SqlReplayCache(first, clock=clock).remember("saml:okta:_a", None)
        assert not SqlReplayCache(second, clock=clock).remember("saml:okta:_a", None)
    finally:
        first.engine.dispose()
        second.engine.dispose()

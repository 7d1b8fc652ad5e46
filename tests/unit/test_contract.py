"""The contract between the operator and keyplane.app: one time format, one token hash, one expiry rule.

Each test checks that the operator's side and the app's side give the same answer, by calling both
halves (not the contract module alone), so a half that stops using the contract fails here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from keyplane.app import Bundle, BundleError
from keyplane.app.tokens import token_valid
from keyplane.contract import (
    BUNDLE_API_VERSION,
    TimeFormatError,
    parse_time,
    parse_time_or_none,
    rfc3339,
    token_hash_live,
    token_sha256,
)
from keyplane.reconcile.bundle import build_bundle, parse_bundle_secret, serialize_bundle
from keyplane.reconcile.scimtoken import TokenSecret, TokenState, plan_token

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_rfc3339_is_utc_with_second_precision() -> None:
    assert rfc3339(datetime(2026, 6, 1, 14, 0, 30, 999, tzinfo=timezone(timedelta(hours=2)))) == "2026-06-01T12:00:30Z"
    assert rfc3339(datetime(2026, 6, 1, 12, 0)) == "2026-06-01T12:00:00Z"  # naive means UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-01T12:00:00Z", NOW),
        ("2026-06-01t12:00:00z", NOW),
        ("2026-06-01T14:00:00+02:00", NOW),
        ("2026-06-01T12:00:00.123456789Z", NOW + timedelta(microseconds=123456)),  # the API server's nanoseconds
        (None, None),
        ("", None),
    ],
)
def test_parse_time_reads_rfc3339(text: str | None, expected: datetime | None) -> None:
    assert parse_time(text) == expected
    assert parse_time(rfc3339(NOW)) == NOW


@pytest.mark.parametrize(
    "text",
    ["not a time", "2026-06-01", "2026-06-01T12:00:00", "2026-13-01T12:00:00Z", "2026-06-01 12:00:00Z",
     " 2026-06-01T12:00:00Z", "1780315200"],
)
def test_parse_time_refuses_anything_else(text: str) -> None:
    """No guessing: a time without an offset or a date alone is an error, not "now" and not "never"."""
    with pytest.raises(TimeFormatError):
        parse_time(text)
    assert parse_time_or_none(text) is None


def test_the_token_hash_is_the_same_on_both_halves() -> None:
    secret = TokenSecret("a-token-of-enough-length-é", NOW)
    # The operator puts state().current_sha256 into the bundle; the app hashes what the IdP presents.
    assert secret.state().current_sha256 == token_sha256("a-token-of-enough-length-é")
    hashes = build_hashes(secret.state(), NOW)
    assert token_valid("a-token-of-enough-length-é", hashes, NOW)
    assert not token_valid("a-token-of-enough-length-e", hashes, NOW)


def build_hashes(state: TokenState, now: datetime) -> tuple:
    """The tokenHashes as the operator writes them, read back as the app reads them."""
    entry = {"endpointPath": "/scim/v2/okta", "tokenHashes": state.token_hashes(now)}
    bundle = build_bundle((), {}, {}, {"okta": entry})
    return Bundle.from_json(serialize_bundle(bundle)).scim["okta"].token_hashes


def test_operator_and_app_agree_on_when_the_previous_token_stops() -> None:
    """At the overlap's end, to the second, both halves stop accepting the previous token."""
    first = TokenSecret("first-token-value-123456", NOW)
    rotated = plan_token(first, rotation_interval=timedelta(0), overlap=timedelta(hours=1),
                         rotate_request="now", now=NOW).secret
    end = NOW + timedelta(hours=1)
    written_before_end = build_hashes(rotated.state(), end - timedelta(seconds=1))
    for moment, accepted in [(end - timedelta(seconds=1), True), (end, False), (end + timedelta(seconds=1), False)]:
        # The app, reading a bundle written before the end, decides by notAfter ...
        assert token_valid(first.token, written_before_end, moment) is accepted
        # ... and the operator, writing at that moment, lists the previous hash only while it is live.
        assert (len(rotated.state().token_hashes(moment)) == 2) is accepted
        assert token_hash_live(end, moment) is accepted
        # The token Secret drops the previous hash by the same rule.
        kept = plan_token(rotated, rotation_interval=timedelta(0), overlap=timedelta(hours=1),
                          rotate_request="now", now=moment).secret
        assert (kept.previous_sha256 is not None) is accepted
    assert token_valid(rotated.token, written_before_end, end + timedelta(days=365))


def test_an_unreadable_not_after_is_refused_by_the_app_not_taken_as_never() -> None:
    document = {"apiVersion": BUNDLE_API_VERSION, "scim": {"okta": {
        "endpointPath": "/scim/v2/okta", "tokenHashes": [{"sha256": token_sha256("x" * 20), "notAfter": "tomorrow"}]}}}
    with pytest.raises(BundleError, match="RFC 3339"):
        Bundle.from_json(json.dumps(document).encode())


def test_an_unreadable_time_in_the_token_secret_counts_as_absent() -> None:
    """The operator's own Secret, edited by hand: an unreadable previous-expires-at ends the overlap."""
    import base64

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    secret = {"metadata": {"creationTimestamp": "2026-06-01T12:00:00Z"},
              "data": {"token": b64("t" * 20), "issued-at": b64("yesterday"),
                       "previous-sha256": b64("ab" * 32), "previous-expires-at": b64("soon")}}
    parsed = TokenSecret.from_secret(secret)
    assert parsed is not None
    assert parsed.issued_at == NOW  # falls back to the Secret's creation time
    assert parsed.state().token_hashes(NOW) == [{"sha256": token_sha256("t" * 20), "notAfter": None}]


def test_the_bundle_schema_version_is_shared() -> None:
    data = serialize_bundle(build_bundle(("Admin",), {}, {}, {}))
    assert json.loads(data)["apiVersion"] == BUNDLE_API_VERSION
    assert Bundle.from_json(data).roles == ("Admin",)
    assert parse_bundle_secret({"stringData": {"identity.json": data.decode()}}) is not None
    other = json.dumps({"apiVersion": "keyplane.dev/bundle-v2"})
    with pytest.raises(BundleError, match="apiVersion"):
        Bundle.from_json(other.encode())
    assert parse_bundle_secret({"stringData": {"identity.json": other}}) is None

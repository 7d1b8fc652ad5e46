"""plan_token: issue, adopt, rotate on request or schedule, expire the previous token; Secret round trip."""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from keyplane_op_helpers import NOW

from keyplane.reconcile.scimtoken import (
    HANDLED_ANNOTATION,
    TokenPlan,
    TokenSecret,
    new_token,
    plan_token,
    token_sha256,
)

DAY = timedelta(days=1)
INTERVAL = timedelta(days=90)
_counter = itertools.count()


def gen() -> str:
    return f"token-{next(_counter):04d}-abcdefghijklmnop"


def plan(
    existing: TokenSecret | None,
    *,
    now: Any = NOW,
    request: str | None = None,
    interval: timedelta = INTERVAL,
    overlap: timedelta = DAY,
    reissue: bool = False,
) -> TokenPlan:
    return plan_token(
        existing,
        rotation_interval=interval,
        overlap=overlap,
        rotate_request=request,
        now=now,
        reissue=reissue,
        generate=gen,
    )


def test_first_issue_writes_a_token_and_says_so() -> None:
    first = plan(None)
    assert first.write and first.reason == "TokenIssued"
    assert first.secret.issued_at == NOW
    assert first.secret.previous_sha256 is None


def test_first_issue_records_an_existing_rotate_annotation_as_handled() -> None:
    first = plan(None, request="2026-05-01")
    assert first.secret.handled_request == "2026-05-01"
    # Applying the same object again does not rotate the brand-new token.
    again = plan(first.secret, now=NOW + timedelta(minutes=1), request="2026-05-01")
    assert not again.write and again.reason is None
    assert again.secret.token == first.secret.token


def test_a_new_annotation_value_rotates_once_keeping_the_previous_hash_for_the_overlap() -> None:
    first = plan(None).secret
    later = NOW + timedelta(hours=3)
    rotated = plan(first, now=later, request="please")
    assert rotated.write and rotated.reason == "TokenRotated"
    assert "on request" in rotated.message
    new = rotated.secret
    assert new.token != first.token
    assert new.issued_at == later
    assert new.previous_sha256 == token_sha256(first.token)
    assert new.previous_expires_at == later + DAY
    assert new.handled_request == "please"
    # The same annotation value again: nothing.
    again = plan(new, now=later + timedelta(minutes=5), request="please")
    assert not again.write and again.secret == new
    # A different value: once more.
    assert plan(new, now=later + timedelta(minutes=6), request="again").reason == "TokenRotated"


def test_removing_the_annotation_does_not_rotate() -> None:
    first = plan(None, request="x").secret
    result = plan(first, now=NOW + DAY, request=None)
    assert not result.write and result.secret.token == first.token


def test_scheduled_rotation_when_due_only() -> None:
    first = plan(None).secret
    assert not plan(first, now=NOW + INTERVAL - timedelta(seconds=1)).write
    due = plan(first, now=NOW + INTERVAL)
    assert due.write and due.reason == "TokenRotated" and "on schedule" in due.message
    assert due.secret.previous_sha256 == token_sha256(first.token)
    # Interval 0 disables scheduled rotation.
    assert not plan(first, now=NOW + 10 * INTERVAL, interval=timedelta(0)).write


def test_overlap_zero_keeps_no_previous_token() -> None:
    first = plan(None).secret
    rotated = plan(first, now=NOW + DAY, request="now", overlap=timedelta(0)).secret
    assert rotated.previous_sha256 is None and rotated.previous_expires_at is None
    assert rotated.state().token_hashes(NOW + DAY) == [
        {"sha256": token_sha256(rotated.token), "notAfter": None}
    ]


def test_previous_token_is_dropped_once_it_expires() -> None:
    first = plan(None).secret
    rotated = plan(first, now=NOW, request="r").secret
    hashes = rotated.state().token_hashes(NOW + timedelta(hours=1))
    assert hashes == [
        {"sha256": token_sha256(rotated.token), "notAfter": None},
        {"sha256": token_sha256(first.token), "notAfter": "2026-06-02T12:00:00Z"},
    ]
    assert len(rotated.state().token_hashes(NOW + DAY)) == 1  # notAfter reached: no longer accepted
    expired = plan(rotated, now=NOW + DAY, request="r")
    assert expired.write and expired.reason is None  # a quiet clean-up write
    assert expired.secret.previous_sha256 is None and expired.secret.previous_expires_at is None
    assert expired.secret.token == rotated.token


def test_reissue_when_the_secret_vanished_is_loud() -> None:
    result = plan(None, reissue=True)
    assert result.write and result.reason == "TokenReissued"
    assert "update it in the IdP" in result.message


def _as_api_secret(token: TokenSecret) -> dict[str, Any]:
    data, annotations = token.to_secret_fields()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "okta-scim-token", "annotations": annotations},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def test_token_secret_round_trips_through_a_secret_and_the_token_stays_out_of_token_state() -> None:
    first = plan(None, request="a").secret
    rotated = plan(first, now=NOW + timedelta(hours=2), request="b").secret
    data, annotations = rotated.to_secret_fields()
    assert data["token"] == rotated.token
    assert annotations == {HANDLED_ANNOTATION: "b"}
    back = TokenSecret.from_secret(_as_api_secret(rotated))
    assert back == rotated
    state = back.state()
    assert state.current_sha256 == token_sha256(rotated.token)
    serialized = json.dumps(asdict(state), default=str)
    assert rotated.token not in serialized and first.token not in serialized
    # stringData (what a user might apply by hand) is read too.
    by_hand = TokenSecret.from_secret(
        {
            "stringData": {"token": "a-long-enough-token-value"},
            "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        }
    )
    assert by_hand is not None and by_hand.token == "a-long-enough-token-value"
    assert by_hand.issued_at.isoformat() == "2026-01-01T00:00:00+00:00"


def test_unusable_secret_content_yields_none() -> None:
    assert TokenSecret.from_secret({"data": {"token": base64.b64encode(b"short").decode()}}) is None
    assert TokenSecret.from_secret({"data": {"token": "%%%not-base64"}}) is None
    assert TokenSecret.from_secret({}) is None


def test_new_tokens_have_at_least_256_bits_and_are_url_safe() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    for token in tokens:
        padded = token + "=" * (-len(token) % 4)
        assert len(base64.urlsafe_b64decode(padded)) * 8 >= 256
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

"""A missing peer skips the tests on a developer machine and fails them in CI."""

from __future__ import annotations

import pytest

from .availability import unavailable


def test_a_missing_peer_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make peers"):
        unavailable("xmlsec1 is not installed")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="xmlsec1 is not installed"):
        unavailable("xmlsec1 is not installed")

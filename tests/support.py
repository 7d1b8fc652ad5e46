"""Helpers shared by the test suites, importable from any of them (`from support import test_settings`).

A conftest.py is not importable by name: `from conftest import ...` in tests/e2e/conftest.py finds that
file itself. Whatever two suites share lives here.
"""

from __future__ import annotations

from typing import Any

from keyplane.settings import Settings

TEST_SETTINGS: dict[str, Any] = dict(
    liveness_endpoint=None,
    bundle_debounce=0.05,
    bundle_max_delay=0.5,
    resync_interval=1.0,
    allow_private_networks=True,
    allow_insecure_http=True,
    metadata_timeout=3.0,
    metadata_connect_timeout=1.0,
)


def test_settings(**overrides: Any) -> Settings:
    """Settings for tests: fast debounce, no liveness port, local metadata servers allowed."""
    return Settings(**{**TEST_SETTINGS, **overrides})


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test for pytest to collect

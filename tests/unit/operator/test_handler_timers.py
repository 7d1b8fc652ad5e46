"""Timers survive API failures: a dropped connection or an error response is logged, never raised.

Kopf reports a timer that raises as "Timer ... failed with an exception" and retries it at once; the
fault suite once saw that for an httpx ReadError. Since the API adapter turns transport errors into
KubeError, the timers catch KubeError and wait for their next tick.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from keyplane_op_helpers import NOW, NS

from keyplane.handlers.kopf_handlers import scim_connection_tick
from keyplane.reconcile.scimtoken import TokenState
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from keyplane.sources.kube import KubeError


class BrokenAPI:
    """Every request fails the way a dropped connection does once the adapter has wrapped it."""

    def __init__(self) -> None:
        self.calls = 0

    async def _fail(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise KubeError(0, "ReadError: connection dropped")

    get = create = patch = patch_status = delete = list = _fail


class Memo:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime


BODY = {"apiVersion": "keyplane.dev/v1alpha1", "kind": "ScimConnection",
        "metadata": {"name": "okta", "namespace": NS, "uid": "u1", "generation": 1}, "spec": {}}


@pytest.mark.parametrize("known_token", [True, False], ids=["secret-check", "issue-token"])
async def test_scim_tick_logs_an_api_failure_and_returns(known_token: bool, caplog: pytest.LogCaptureFixture) -> None:
    api = BrokenAPI()
    runtime = Runtime(settings=Settings(), kube=api, cache=None, resolver=None,  # type: ignore[arg-type]
                      clock=lambda: NOW)
    if known_token:  # not due: the tick only checks that the token Secret still exists
        runtime.tokens[(NS, "okta")] = TokenState("ab" * 32, NOW, None, None)
    with caplog.at_level(logging.WARNING, logger="keyplane.operator"):
        await scim_connection_tick(body=BODY, memo=Memo(runtime))
    assert api.calls >= 1
    assert any("okta" in r.getMessage() and "next tick" in r.getMessage() for r in caplog.records)

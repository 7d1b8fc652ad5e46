"""An unreachable API server is a KubeError: a change handler turns it into a Kopf retry, a periodic check
logs it and waits for its next tick; never a crash or a traceback.

(A flaky run once logged `Timer 'scim_connection_tick' failed with ReadError('')`: httpx's own
exception escaped every `except KubeError`.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest

from keyplane.handlers.kopf_handlers import identity_provider_changed
from keyplane.reconcile.model import Snapshot
from keyplane.reconcile.scimtoken import TokenState
from keyplane.runtime import Runtime
from keyplane.settings import Settings
from keyplane.sources.credentials import ClusterCredentials
from keyplane.sources.kube import KubeAPI
from keyplane.ticks import scim_connection_tick


class Unused:
    """The metadata cache and the DNS resolver: these scenarios never get as far as using them."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected use of {name}")


@pytest.fixture
async def unreachable_runtime() -> AsyncIterator[Runtime]:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()  # a reset mid-request, as when the API server restarts

    listener = await asyncio.start_server(reset, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    kube = KubeAPI(ClusterCredentials(f"http://127.0.0.1:{port}"))
    yield Runtime(settings=Settings(liveness_endpoint=None), kube=kube, cache=Unused(), resolver=Unused())  # type: ignore[arg-type]
    await kube.aclose()
    listener.close()
    await listener.wait_closed()


def body(kind: str, spec: dict[str, Any]) -> kopf.Body:
    return kopf.Body({"apiVersion": "keyplane.dev/v1alpha1", "kind": kind, "spec": spec,
                      "metadata": {"name": "okta", "namespace": "team-a", "uid": "u1", "generation": 1}})


@pytest.mark.parametrize("token_known", [False, True], ids=["issuing-the-token", "checking-the-secret"])
async def test_scim_timer_logs_and_waits_when_the_api_server_is_unreachable(
    unreachable_runtime: Runtime, token_known: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Retrying at once would hammer a struggling API server; the next tick is soon."""
    # Observed before, without a token (its IdP was not Ready): the tick issues one. Or with a token:
    # nothing is due, and the tick only checks that the token Secret still exists.
    now = datetime.now(UTC)
    unreachable_runtime.tokens[("team-a", "okta")] = TokenState("ab" * 32, now, None, None) if token_known else None
    snap = Snapshot.from_body(body("ScimConnection", {"token": {"rotationInterval": "0s"}}))
    with caplog.at_level(logging.WARNING, logger="keyplane.operator"):
        await scim_connection_tick(unreachable_runtime, snap)
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "keyplane.operator"]
    assert "team-a/okta" in warning and "API server unavailable" in warning and "next tick" in warning


async def test_idp_handler_retries_when_the_api_server_is_unreachable(unreachable_runtime: Runtime) -> None:
    memo = kopf.Memo(runtime=unreachable_runtime)
    spec = {"protocol": "SAML", "saml": {"metadata": {"inline": "<x/>"}}}
    with pytest.raises(kopf.TemporaryError, match=r"IdentityProvider team-a/okta: .*API server unavailable"):
        await identity_provider_changed(body=body("IdentityProvider", spec), memo=memo)

"""The command line as users run it: `keyplane run` as a process, and `keyplane demo`."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import httpx

from keyplane.demo import run_demo
from keyplane.settings import Settings

from .test_quickstart import QUICKSTART, apply_quickstart, ready

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_keyplane_run_reconciles_serves_liveness_and_stops_on_sigterm(cluster: Any) -> None:
    docs = await apply_quickstart(cluster)
    port = _free_port()
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig_path,
           "KEYPLANE_LIVENESS_ENDPOINT": f"http://127.0.0.1:{port}/healthz",
           "KEYPLANE_BUNDLE_DEBOUNCE": "0.1", "KEYPLANE_BUNDLE_SECRET_NAME": "platform-identity"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keyplane", "run", "--roles", "Admin,Member,Viewer", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async def converged() -> bool:
            bundle = await cluster.get("v1", "Secret", "keyplane-demo", "platform-identity")  # from the env
            objects = [await cluster.get(d["apiVersion"], d["kind"], "keyplane-demo", d["metadata"]["name"])
                       for d in docs]
            return bundle is not None and all(ready(o) for o in objects)

        await cluster.wait_for(converged, timeout=60, interval=0.2)
        assert await cluster.get("v1", "Secret", "keyplane-demo", "keyplane-identity") is None

        async def live() -> bool:
            async with httpx.AsyncClient() as client:
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

        await cluster.wait_for(live, timeout=10, interval=0.2)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
        stderr = (await process.stderr.read()).decode() if process.stderr else ""
        assert "Traceback" not in stderr, stderr[-2000:]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_demo_converges_and_reports() -> None:
    out = io.StringIO()
    settings = Settings(liveness_endpoint=None, bundle_debounce=0.05, bundle_max_delay=0.5)
    assert await run_demo(QUICKSTART, timeout=60, out=out, settings=settings) == 0
    text = out.getvalue()
    assert "Converged in" in text
    # The demo shows the deployed shape: the operator under the chart's ServiceAccount and RBAC.
    assert "authenticates as system:serviceaccount:keyplane-system:keyplane under the chart's RBAC" in text
    for line in ("IdentityProvider  keyplane-demo  okta", "ScimConnection    keyplane-demo  okta"):
        assert line in text
    assert "https://platform.example.com/sso/saml/okta/acs" in text
    assert "keyplane-identity" in text and "okta-scim-token" in text

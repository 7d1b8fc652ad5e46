"""The operator keeps working when its ServiceAccount token is replaced and the old one refused.

The emulated API server checks bearer tokens and the chart's RBAC. The operator reads its token from
a file (kubeconfig `tokenFile`, the same source as the pod's projected token). Mid-run the file gets
a new token of the same ServiceAccount and the old token is revoked: both Kopf (its own patches, such
as the finalizer of a new object) and Keyplane's writes (status, the bundle Secret) must go on, after
one 401 each, without a restart. Time is frozen for the credentials, so only the 401 triggers the
re-read (the minute-old re-read is covered in tests/unit/sources/test_credentials.py).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import kopf
import yaml

from keyplane.sources.kubeconfig import load_kubeconfig
from keyplane.testing import running_operator
from support import test_settings

from .builders import API, NS, bundle_of, is_ready, namespace, saml_idp

FROZEN = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def token_file_kubeconfig(directory: Path, server: str, token: str) -> Path:
    (directory / "token").write_text(token)
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "operator", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "operator"}}],
    }))
    return path


async def _ready(cluster: Any, name: str) -> dict[str, Any] | None:
    obj = await cluster.get(API, "IdentityProvider", NS, name)
    return obj if is_ready(obj) else None


async def _bundled(cluster: Any, name: str) -> bool:
    secret = await cluster.get("v1", "Secret", NS, "keyplane-identity")
    return secret is not None and name in bundle_of(secret)["identityProviders"]


async def test_a_replaced_and_revoked_token_is_picked_up_without_a_restart(cluster: Any, tmp_path: Path) -> None:
    from keyplane import handlers  # noqa: F401  (registers the handlers)

    assert cluster.rbac is not None, "the emulated cluster authorizes the chart's ServiceAccount"
    first = cluster.operator_token
    config = token_file_kubeconfig(tmp_path, cluster.url, first)
    credentials = load_kubeconfig([str(config)], clock=lambda: FROZEN)
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("okta"))
    memo = kopf.Memo(settings=test_settings(), credentials=credentials)
    async with running_operator(memo=memo, clusterwide=True, shutdown_timeout=8.0):
        await cluster.wait_for(lambda: _ready(cluster, "okta"), timeout=15)
        await cluster.wait_for(lambda: _bundled(cluster, "okta"), timeout=15)

        second = cluster.authorizer.issue_token(cluster.rbac.user)
        (tmp_path / "token").write_text(second)
        cluster.authorizer.revoke(first)
        cluster.authorizer.reset_records()

        await cluster.apply(saml_idp("keycloak"))
        obj = await cluster.wait_for(lambda: _ready(cluster, "keycloak"), timeout=15)  # status: Keyplane's
        assert "keyplane.dev/finalizer" in obj["metadata"]["finalizers"]  # added by Kopf itself
        await cluster.wait_for(lambda: _bundled(cluster, "keycloak"), timeout=15)
        assert await credentials.authorization() == f"Bearer {second}"

    # The old token was tried and refused (the rotation really happened), and nothing was forbidden.
    assert cluster.authorizer.unauthenticated
    assert not [line for line in cluster.authorizer.refusals(cluster.rbac.user) if line.startswith("403")]

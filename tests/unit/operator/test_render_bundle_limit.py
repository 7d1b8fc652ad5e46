"""A namespace whose bundle would pass the 1 MiB a Secret holds, through `keyplane render` (the operator's
pass, pure): the bundle written fits, holds whole tenants that `keyplane.app` accepts, and every tenant
left out says why. 300 tenants of one IdentityProvider (the quickstart's inline SAML metadata), SSODomain
and ScimConnection each: ~4 KB of bundle per tenant, so about 250 fit."""

from __future__ import annotations

import base64
import copy
import io
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from keyplane_op_helpers import QUICKSTART

from keyplane.app.bundle import Bundle
from keyplane.reconcile.bundle import BUNDLE_KEY
from keyplane.reconcile.bundlefit import SECRET_DATA_MAX_BYTES, UPDATE_HEADROOM_BYTES
from keyplane.render import EXIT_NOT_READY, run_render
from keyplane.settings import Settings

NOW = datetime(2026, 12, 1, tzinfo=UTC)  # the quickstart certificates are valid from 2026-11-01
TENANTS = 300
NS = "tenants"


def tenant_documents() -> list[dict[str, Any]]:
    okta = yaml.safe_load((QUICKSTART / "10-identityprovider-okta.yaml").read_text())
    entity_id = "http://www.okta.com/exkDEMO1234567890"
    docs: list[dict[str, Any]] = []
    for i in range(TENANTS):
        name = f"tenant-{i:03d}"
        idp = copy.deepcopy(okta)
        idp["metadata"] = {"name": name, "namespace": NS}
        idp["spec"]["saml"]["signAuthnRequests"] = False  # no SP key each: 300 RSA keys would take a minute
        inline = idp["spec"]["saml"]["metadata"]["inline"]
        assert entity_id in inline
        idp["spec"]["saml"]["metadata"]["inline"] = inline.replace(entity_id, f"{entity_id}-{i:03d}")
        docs += [
            idp,
            {"apiVersion": "keyplane.dev/v1alpha1", "kind": "SSODomain", "metadata": {"name": name, "namespace": NS},
             "spec": {"domains": [f"{name}.example.com"], "identityProviderRef": {"name": name}}},
            {"apiVersion": "keyplane.dev/v1alpha1", "kind": "ScimConnection",
             "metadata": {"name": name, "namespace": NS},
             "spec": {"identityProviderRef": {"name": name},
                      "groupBindings": [{"group": "platform-admins", "role": "Admin"}]}},
        ]
    return docs


def test_a_namespace_over_the_secret_limit_gets_the_largest_bundle_that_fits(tmp_path: Path) -> None:
    (tmp_path / "tenants.yaml").write_text(yaml.safe_dump_all(tenant_documents()))
    out, err = io.StringIO(), io.StringIO()
    code = run_render([str(tmp_path)], Settings(), NOW, out, err, offline=True)
    docs = [d for d in yaml.safe_load_all(out.getvalue()) if d]

    (secret,) = [d for d in docs if d["kind"] == "Secret" and BUNDLE_KEY in (d.get("data") or {})]
    data = base64.b64decode(secret["data"][BUNDLE_KEY])
    # What the API server would accept, with room left for changes to what it serves.
    assert len(data) <= SECRET_DATA_MAX_BYTES - UPDATE_HEADROOM_BYTES
    bundle = Bundle.from_json(data)  # and the app: no domain names an IdP the bundle left out
    served = set(bundle.identity_providers)
    assert 0 < len(served) < TENANTS
    # New tenants filled it, to within about one tenant.
    assert SECRET_DATA_MAX_BYTES - UPDATE_HEADROOM_BYTES - len(data) < 2 * len(data) / len(served)
    assert served == {f"tenant-{i:03d}" for i in range(len(served))}  # whole tenants, in name order
    assert {d.identity_provider for d in bundle.domains.values()} == served
    assert {c.identity_provider for c in bundle.scim.values()} == served

    ready = {(d["kind"], d["metadata"]["name"]): next(c for c in d["status"]["conditions"] if c["type"] == "Ready")
             for d in docs if "status" in d}
    reasons = Counter((kind, c["reason"]) for (kind, name), c in ready.items() if name not in served)
    left_out = TENANTS - len(served)
    assert reasons == {(kind, "BundleTooLarge"): left_out
                       for kind in ("IdentityProvider", "SSODomain", "ScimConnection")}
    assert all(c["status"] == "True" for (_, name), c in ready.items() if name in served)
    assert code == EXIT_NOT_READY
    assert f"namespace {NS}'s identity bundle would be" in err.getvalue()
    # No SP metadata ConfigMap for an IdentityProvider the bundle does not serve.
    configmaps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    assert configmaps == {f"{name}-sp-metadata" for name in served}

"""Argo CD health checks (Lua) for the Keyplane kinds, shipped as package data.

Argo CD has no generic health for custom resources: each kind needs a script under
``resource.customizations.health.keyplane.dev_<Kind>`` in ``argocd-cm``. The scripts follow the kstatus
rules the operator's conditions are built for (see docs/gitops.md); the Helm chart renders the same
files (``argocd.healthChecks.enabled``).
"""

from __future__ import annotations

from importlib import resources

KINDS = ("IdentityProvider", "SSODomain", "ScimConnection")
GROUP = "keyplane.dev"


def health_script() -> str:
    """The Lua source of the health check; one script serves every kind (they share the conditions)."""
    return resources.files(__name__).joinpath("health.lua").read_text(encoding="utf-8")


def health_scripts() -> dict[str, str]:
    """Kind -> the Lua source of its Argo CD health check."""
    script = health_script()
    return dict.fromkeys(KINDS, script)


def argocd_cm_entries() -> dict[str, str]:
    """The ``argocd-cm`` data keys and values that install every health check."""
    return {f"resource.customizations.health.{GROUP}_{kind}": script for kind, script in health_scripts().items()}

"""No SP signing Secret is created for an IdP whose metadata URL is refused (issue 11).

The real operator, with the production default (private networks not allowed), on the emulated API
server: an IdP whose metadata URL points at a loopback address stays unresolved and gets no
``<name>-sp-signing`` Secret; an IdP in the same namespace whose metadata resolves gets one.
"""

from __future__ import annotations

from typing import Any

from .builders import NS, condition, namespace, saml_idp


async def test_no_sp_signing_secret_for_a_refused_metadata_url(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.apply(namespace())
    await cluster.apply(saml_idp("refused", url="https://127.0.0.1:1/metadata", refresh="1h", sign=True))
    await cluster.apply(saml_idp("resolved", sign=True))
    async with keyplane_operator(allow_private_networks=False):

        async def settled() -> tuple[dict[str, Any], dict[str, Any]] | None:
            refused = condition(await cluster.get("keyplane.dev/v1alpha1", "IdentityProvider", NS, "refused"))
            signing = await cluster.get("v1", "Secret", NS, "resolved-sp-signing")
            if refused.get("reason") != "MetadataURLForbidden" or signing is None:
                return None
            return refused, signing

        refused, _ = await cluster.wait_for(settled, timeout=20)
        assert refused["status"] == "False"
        assert await cluster.get("v1", "Secret", NS, "refused-sp-signing") is None

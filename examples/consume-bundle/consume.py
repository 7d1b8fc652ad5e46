"""How any Python web app reads the Keyplane identity bundle, without `keyplane.app`.

Mount the namespace's `keyplane-identity` Secret as a volume (e.g. at /etc/keyplane) and call these
functions from your own login and SCIM code. Only python3-saml and the standard library are used.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.settings import OneLogin_Saml2_Settings

BUNDLE_PATH = Path("/etc/keyplane/identity.json")


def load_bundle(path: Path = BUNDLE_PATH) -> dict[str, Any]:
    """Read the bundle; Kubernetes swaps the file atomically, so re-read it when its mtime changes."""
    bundle = json.loads(path.read_text())
    if bundle.get("apiVersion") != "keyplane.dev/bundle-v1":
        raise ValueError(f"unsupported bundle version {bundle.get('apiVersion')!r}")
    return dict(bundle)


def identity_provider_for(bundle: dict[str, Any], email: str) -> tuple[str | None, bool]:
    """(IdP name to send this user to, whether local password login is still allowed)."""
    domain = email.rsplit("@", 1)[-1].lower()
    rule = bundle["domains"].get(domain)
    if rule is None:
        return None, True
    local_allowed = rule["enforcement"] == "Optional" or email.lower() in rule["breakGlassUsers"]
    return rule["identityProvider"], local_allowed


def saml_auth(bundle: dict[str, Any], idp_name: str, request_data: dict[str, Any]) -> OneLogin_Saml2_Auth:
    """A python3-saml Auth object for the IdP: `.login()` to start, `.process_response()` at the ACS.

    `request_data` is python3-saml's usual dict (https, http_host, script_name, get_data, post_data).
    """
    settings = bundle["identityProviders"][idp_name]["saml"]
    return OneLogin_Saml2_Auth(request_data, OneLogin_Saml2_Settings(settings))


def scim_token_valid(bundle: dict[str, Any], connection: str, authorization: str,
                     now: datetime | None = None) -> bool:
    """Check `Authorization: Bearer <token>` against the connection's token hashes (rotation overlap included)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    now = now or datetime.now(tz=UTC)
    presented = hashlib.sha256(token.encode()).hexdigest()
    valid = False
    for entry in bundle["scim"][connection]["tokenHashes"]:
        not_after = entry["notAfter"]
        if not_after and datetime.fromisoformat(not_after.replace("Z", "+00:00")) <= now:
            continue
        # compare every hash, in constant time, so timing does not tell which one almost matched
        valid |= hmac.compare_digest(presented, entry["sha256"])
    return valid


def role_for(bundle: dict[str, Any], connection: str, groups: list[str]) -> str:
    """The most privileged of the default role and the roles bound to the user's groups."""
    scim = bundle["scim"][connection]
    candidates = [scim["defaultUserRole"]]
    for group in groups:
        role = scim["groupBindings"].get(group, scim["unboundGroupRole"])
        if role != "None":
            candidates.append(role)
    order = bundle["roles"]  # most privileged first
    return min(candidates, key=lambda r: order.index(r) if r in order else len(order))

"""reconcile_scim_connection: roles checked, last good bindings kept, endpoint URL, following the IdP."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from keyplane_op_helpers import NOW, cond, cstate, scim_snap, settings

from keyplane.reconcile.scimconnection import reconcile_scim_connection
from keyplane.reconcile.scimtoken import TokenState, token_sha256
from keyplane.reconcile.ssodomain import IdPState

TOKEN = "the-plaintext-token-value-000000000000"
STATE = TokenState(
    token_sha256(TOKEN),
    NOW - timedelta(hours=1),
    token_sha256("old-token-value-xxxxxxxx"),
    NOW + timedelta(hours=5),
)
IDP = IdPState(exists=True, ready=True, serving=True, reason="Ready", base_url="https://platform.example.com")


def reconcile(
    snap: Any,
    token: TokenState | None = STATE,
    idp: IdPState | None = IDP,
    previous: dict[str, Any] | None = None,
    **overrides: Any,
) -> Any:
    return reconcile_scim_connection(snap, token, idp, previous, settings(**overrides), NOW)


def phase(status: dict[str, Any]) -> tuple[str, str, str]:
    return (
        cond(status, "Ready")["status"],
        cond(status, "Reconciling")["status"],
        cond(status, "Stalled")["status"],
    )


def test_ready_connection_status_and_entry() -> None:
    result = reconcile(scim_snap())
    status = result.status
    assert phase(status) == ("True", "False", "False")
    assert status["endpointURL"] == "https://platform.example.com/scim/v2/okta"
    assert status["tokenSecretRef"] == {"name": "okta-scim-token", "key": "token"}
    assert status["tokenIssuedAt"] == "2026-06-01T11:00:00Z"
    assert status["tokenRotatesAt"] == "2026-08-30T11:00:00Z"  # default rotationInterval 2160h
    assert status["previousTokenExpiresAt"] == "2026-06-01T17:00:00Z"
    assert cstate(status, "TokenIssued") == ("True", "Issued")
    assert cstate(status, "BindingsValid") == ("True", "Valid")
    assert result.entry == {
        "endpointPath": "/scim/v2/okta",
        "tokenHashes": [
            {"sha256": STATE.current_sha256, "notAfter": None},
            {"sha256": STATE.previous_sha256, "notAfter": "2026-06-01T17:00:00Z"},
        ],
        "identityProvider": "okta",
        "defaultUserRole": "Member",
        "deprovisionAction": "Deactivate",
        "userIdentifier": "email",
        "groupBindings": {"platform-admins": "Admin", "data": "Member"},
        "unboundGroupRole": "None",
    }
    assert TOKEN not in json.dumps(status) and TOKEN not in json.dumps(result.entry)


def test_custom_secret_name_and_disabled_rotation() -> None:
    snap = scim_snap(spec={"token": {"secretName": "my-token", "rotationInterval": "0"}})
    status = reconcile(snap, idp=None).status
    assert status["tokenSecretRef"]["name"] == "my-token"
    assert "tokenRotatesAt" not in status


def test_unknown_role_is_stalled_naming_the_offender_and_keeps_previous_bindings_with_current_hashes() -> (
    None
):
    good = reconcile(scim_snap()).entry
    bad_spec = {
        "identityProviderRef": {"name": "okta"},
        "groupBindings": [{"group": "platform-admins", "role": "Owner"}, {"group": "data", "role": "Member"}],
    }
    rotated = TokenState(
        token_sha256("brand-new-token-after-rotation"), NOW, STATE.current_sha256, NOW + timedelta(hours=24)
    )
    result = reconcile(scim_snap(spec=bad_spec), token=rotated, previous=good)
    assert phase(result.status) == ("False", "False", "True")
    bindings = cond(result.status, "BindingsValid")
    assert (bindings["status"], bindings["reason"]) == ("False", "UnknownRole")
    assert "'platform-admins' -> role 'Owner'" in bindings["message"]
    assert "Admin, Member, Viewer" in bindings["message"]
    assert cstate(result.status, "Ready") == ("False", "UnknownRole")
    assert result.entry["groupBindings"] == {"platform-admins": "Admin", "data": "Member"}
    assert result.entry["tokenHashes"] == rotated.token_hashes(NOW)
    # Roles come from the settings.
    custom = reconcile(scim_snap(spec=bad_spec), roles=("Owner", "Member"))
    assert cstate(custom.status, "Ready") == ("True", "Ready")


def test_unknown_default_and_unbound_roles_are_named_too() -> None:
    spec = {"provisioning": {"defaultUserRole": "Guest"}, "unboundGroupRole": "Reader"}
    message = cond(reconcile(scim_snap(spec=spec), idp=None).status, "BindingsValid")["message"]
    assert "defaultUserRole 'Guest'" in message and "unboundGroupRole 'Reader'" in message


def test_unknown_role_without_a_previous_entry_contributes_nothing() -> None:
    spec = {"groupBindings": [{"group": "g", "role": "Owner"}]}
    assert reconcile(scim_snap(spec=spec), idp=None).entry is None


def test_endpoint_url_uses_the_idps_base_url_or_the_default() -> None:
    other = IdPState(exists=True, ready=True, serving=True, base_url="https://sso.example.org/app")
    assert (
        reconcile(scim_snap(), idp=other).status["endpointURL"] == "https://sso.example.org/app/scim/v2/okta"
    )
    snap = scim_snap("standalone", spec={})
    assert (
        reconcile(snap, idp=None, default_base_url="https://d.example.com/").status["endpointURL"]
        == "https://d.example.com/scim/v2/standalone"
    )


def test_referenced_idp_missing_keeps_the_connection_out_of_the_bundle() -> None:
    missing = IdPState(exists=False, ready=False, serving=False)
    for idp in (missing, None):
        result = reconcile(scim_snap(), idp=idp)
        assert result.entry is None
        assert phase(result.status) == ("False", "True", "False")
        assert cstate(result.status, "Ready") == ("False", "IdentityProviderNotFound")


def test_idp_not_ready_and_not_serving_keeps_it_out_serving_keeps_it_in() -> None:
    down = reconcile(
        scim_snap(), idp=IdPState(exists=True, ready=False, serving=False, reason="MetadataMalformed")
    )
    assert down.entry is None
    assert cstate(down.status, "Ready") == ("False", "IdentityProviderNotReady")
    degraded = reconcile(scim_snap(), idp=IdPState(exists=True, ready=False, serving=True, reason="Expired"))
    assert degraded.entry is not None


def test_no_idp_ref_is_in_the_bundle_on_its_own() -> None:
    result = reconcile(scim_snap(spec={"groupBindings": []}), idp=None)
    assert cstate(result.status, "Ready") == ("True", "Ready")
    assert result.entry is not None and result.entry["identityProvider"] is None


def test_no_token_yet_is_reconciling_and_contributes_nothing() -> None:
    result = reconcile(scim_snap(), token=None)
    assert phase(result.status) == ("False", "True", "False")
    assert cstate(result.status, "Ready") == ("False", "IssuingToken")
    assert cstate(result.status, "TokenIssued") == ("False", "IssuingToken")
    assert result.entry is None
    assert "tokenIssuedAt" not in result.status


def test_invalid_spec_keeps_the_previous_entry_with_current_hashes() -> None:
    good = reconcile(scim_snap()).entry
    dup = {"groupBindings": [{"group": "a", "role": "Admin"}, {"group": "a", "role": "Viewer"}]}
    result = reconcile(scim_snap(spec=dup), previous=good)
    assert cstate(result.status, "Ready") == ("False", "InvalidSpec")
    assert cstate(result.status, "Stalled")[0] == "True"
    assert result.entry["groupBindings"] == good["groupBindings"]

"""From a validated SSO identity to the app's user: who they are, and their role.

Rules:
* First of all, the email's canonical domain must route, through the bundle's domain table, to the
  IdP that authenticated it (:func:`keyplane.policy.may_login`). There is no exception for users
  found in the IdP's SCIM partition: an IdP cannot log users of another IdP's domains in, whatever
  its SCIM connection stored. The user is looked up by the canonical address only, and a stored
  user is used only when all its stored addresses (``userName`` and ``emails``) are still the IdP's
  under the current bundle (:func:`keyplane.policy.may_act_for_user`); otherwise the login is refused.
* ``LoginResult.email`` is the key the app mirrors on; it equals ``UserChange.login`` of the same user.
* A user provisioned by SCIM logs in with their SCIM role (``defaultUserRole`` and the roles of
  their groups); a deactivated (deprovisioned) user is refused.
* A user not (yet) provisioned, on an IdP that has a SCIM connection, gets the role the
  connection would give the groups in the assertion (just-in-time).
* Without any SCIM connection for the IdP the role is None: the app decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keyplane.app.bundle import Bundle
from keyplane.app.errors import LoginError
from keyplane.app.roles import effective_role
from keyplane.app.scim_storage import email_values
from keyplane.app.storage import Storage
from keyplane.policy.access import may_act_for_user, may_login


@dataclass(frozen=True)
class LoginResult:
    email: str
    identity_provider: str
    protocol: str
    role: str | None
    groups: tuple[str, ...]
    provisioned: bool
    user_id: str | None = None
    connection: str | None = None
    subject: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "email": self.email,
            "identityProvider": self.identity_provider,
            "protocol": self.protocol,
            "role": self.role,
            "groups": list(self.groups),
            "provisioned": self.provisioned,
            "userId": self.user_id,
            "connection": self.connection,
        }


def resolve_login(
    bundle: Bundle,
    storage: Storage,
    idp_name: str,
    email: str | None,
    groups: Sequence[str],
    *,
    subject: str | None = None,
) -> LoginResult:
    idp = bundle.identity_providers[idp_name]
    if not email:
        raise LoginError("the identity provider did not send an email address", code="login.no_email")
    decision = may_login(bundle.domains, idp_name, email)
    if not decision.allowed or decision.email is None:
        code = "login.invalid_email" if decision.email is None else "login.domain_not_owned"
        raise LoginError(f"{idp.display_name} may not log this user in: {decision.reason}", code=code)
    address = decision.email
    connections = bundle.connections_for(idp_name)
    for connection in connections:
        user = storage.find_user(connection.name, address, connection.user_identifier)
        if user is None:
            continue
        stored = may_act_for_user(
            bundle.domains,
            idp_name,
            user.user_name,
            email_values(user.attributes),
            keyed_on_user_name=connection.user_identifier == "userName",
        )
        if not stored.allowed:
            # Stored while its domain was this IdP's (or before it became break-glass): never used.
            reason = f"{idp.display_name} may not log this user in: the stored user's {stored.reason}"
            raise LoginError(reason, code="login.domain_not_owned")
        if not user.active:
            raise LoginError(f"{address} was deprovisioned by {idp.display_name}", code="login.deprovisioned")
        return LoginResult(
            address, idp_name, idp.protocol, user.role, user.groups, True, user.id, connection.name, subject
        )
    if connections:
        role = effective_role(bundle.roles, connections[0], groups)
        return LoginResult(
            address, idp_name, idp.protocol, role, tuple(groups), False, None, connections[0].name, subject
        )
    return LoginResult(address, idp_name, idp.protocol, None, tuple(groups), False, None, None, subject)

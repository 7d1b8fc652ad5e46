"""From a validated SSO identity to the app's user: who they are, and their role.

Rules:
* The email must belong to a domain claimed by this IdP, or to a user this IdP's SCIM
  connection provisioned; an IdP cannot log users of other domains in.
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
from keyplane.app.routing import LoginRouter
from keyplane.app.storage import Storage


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
    if not email:
        raise LoginError("the identity provider did not send an email address")
    idp = bundle.identity_providers[idp_name]
    route = LoginRouter(bundle).route(email)
    connections = bundle.connections_for(idp_name)
    for connection in connections:
        user = storage.find_user(connection.name, email, connection.user_identifier)
        if user is None:
            continue
        if not user.active:
            raise LoginError(f"{email} was deprovisioned by {idp.display_name}")
        return LoginResult(
            email, idp_name, idp.protocol, user.role, user.groups, True, user.id, connection.name, subject
        )
    if route.identity_provider != idp_name:
        raise LoginError(f"{idp.display_name} may not log in {email}: its domain is not claimed by this IdP")
    if connections:
        role = effective_role(bundle.roles, connections[0], groups)
        return LoginResult(
            email, idp_name, idp.protocol, role, tuple(groups), False, None, connections[0].name, subject
        )
    return LoginResult(email, idp_name, idp.protocol, None, tuple(groups), False, None, None, subject)

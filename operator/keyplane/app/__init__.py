"""The app side of Keyplane (extra ``keyplane[app]``): SSO logins and SCIM from the identity bundle.

Framework-neutral core classes plus thin Starlette/ASGI wiring (:class:`Keyplane`). Never imports
Kopf or the Kubernetes client::

    from keyplane.app import Keyplane
    kp = Keyplane("/etc/keyplane/identity.json", database_url="sqlite:///keyplane.db", secret_key=...)
    app = kp.wrap(my_asgi_app)
"""

from keyplane.app.bundle import Bundle, BundleError, BundleStore, IdentityProvider, ScimConnection
from keyplane.app.errors import LoginError
from keyplane.app.login import LoginResult, resolve_login
from keyplane.app.login_state import LoginStateStore
from keyplane.app.logout import LogoutEvent
from keyplane.app.oidc import OidcIdentity, OidcLogin, PendingOidcLogin
from keyplane.app.replay import ReplayCache, SqlReplayCache
from keyplane.app.roles import effective_role, highest_role
from keyplane.app.routing import LoginRoute, LoginRouter
from keyplane.app.saml import SamlIdentity, SamlLogin
from keyplane.app.saml_logout import SamlLogout
from keyplane.app.scim import KeyplaneScimService, ScimEndpoint, ScimRouter, build_provider
from keyplane.app.scim_storage import SqlScimStorage
from keyplane.app.storage import ProvisionedGroup, ProvisionedUser, Storage, UserChange
from keyplane.app.tokens import token_sha256, token_valid
from keyplane.app.web import Keyplane

__all__ = [
    "Bundle",
    "BundleError",
    "BundleStore",
    "IdentityProvider",
    "Keyplane",
    "KeyplaneScimService",
    "LoginError",
    "LoginResult",
    "LoginRoute",
    "LoginRouter",
    "LoginStateStore",
    "LogoutEvent",
    "OidcIdentity",
    "OidcLogin",
    "PendingOidcLogin",
    "ProvisionedGroup",
    "ProvisionedUser",
    "ReplayCache",
    "SamlIdentity",
    "SamlLogin",
    "SamlLogout",
    "ScimConnection",
    "ScimEndpoint",
    "ScimRouter",
    "SqlReplayCache",
    "SqlScimStorage",
    "Storage",
    "UserChange",
    "build_provider",
    "effective_role",
    "highest_role",
    "resolve_login",
    "token_sha256",
    "token_valid",
]

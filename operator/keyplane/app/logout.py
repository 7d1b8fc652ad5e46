"""What keyplane.app tells the web app when a user logs out, so it ends its own session.

``on_logout(request, LogoutEvent)`` is called when the app starts a logout (``/sso/.../logout``) and
when the IdP asks for one (SAML LogoutRequest at ``/sso/saml/<idp>/slo``). An app that keeps its own
sessions ends every session of ``subject`` (the SAML NameID / OIDC ``sub``) from ``identity_provider``
(for SAML, only those of ``session_indexes`` when that is not empty). The default ``keyplane_session``
cookie is deleted by keyplane.app itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request


@dataclass(frozen=True)
class LogoutEvent:
    identity_provider: str
    protocol: Literal["SAML", "OIDC"]
    subject: str | None
    initiated_by: Literal["app", "idp"]
    session_indexes: tuple[str, ...] = ()
    email: str | None = None


OnLogout = Callable[[Request, LogoutEvent], "Awaitable[None] | None"]

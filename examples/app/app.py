"""A small Starlette app that gets SSO (SAML/OIDC), login routing and SCIM from a Keyplane bundle.

    KEYPLANE_BUNDLE=identity.json KEYPLANE_SECRET_KEY=change-me uvicorn app:app

Environment: ``KEYPLANE_BUNDLE`` (the mounted Secret file, default
``/etc/keyplane/identity.json``), ``KEYPLANE_DATABASE_URL`` (default ``sqlite:///keyplane.db``),
``KEYPLANE_SECRET_KEY`` (signs the login cookies).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from keyplane.app import Keyplane, UserChange

# The app's own user table (a dict here): Keyplane mirrors SCIM changes into it.
USERS: dict[str, dict[str, object]] = {}


def mirror(change: UserChange) -> None:
    key = f"{change.user.connection}:{change.user.id}"
    if change.action == "delete":
        USERS.pop(key, None)
    else:
        USERS[key] = {
            "login": change.login,  # the key to match logins on: equals LoginResult.email
            "email": change.user.email,
            "userName": change.user.user_name,
            "role": change.user.role,
            "active": change.action == "upsert",
        }


def create_app(
    bundle: str | None = None, database_url: str | None = None, secret_key: str | None = None
) -> tuple[Keyplane, object]:
    kp = Keyplane(
        bundle or os.environ.get("KEYPLANE_BUNDLE", "/etc/keyplane/identity.json"),
        database_url=database_url or os.environ.get("KEYPLANE_DATABASE_URL", "sqlite:///keyplane.db"),
        secret_key=secret_key or os.environ.get("KEYPLANE_SECRET_KEY"),
    )
    kp.add_listener(mirror)

    async def home(request: Request) -> Response:
        user = kp.current_user(request)
        return JSONResponse({"user": user, "mirroredUsers": len(USERS)})

    async def password_login(request: Request) -> Response:
        form = await request.form()
        email = str(form.get("email", ""))
        route = kp.route(email)
        if not route.local_login_allowed:
            # The domain requires SSO: send the user to their IdP instead.
            return RedirectResponse(f"{route.login_path}?email={email}", status_code=303)
        return PlainTextResponse("check the password here", status_code=501)

    app = Starlette(routes=[Route("/", home), Route("/login", password_login, methods=["POST"])])
    return kp, kp.wrap(app)  # type: ignore[arg-type]


if os.environ.get("KEYPLANE_BUNDLE"):
    keyplane, app = create_app()

"""``keyplane app-demo --bundle FILE [--port N] [--host 127.0.0.1]``: serve a bundle's SSO and SCIM.

A tiny page shows the login routing for an email and who is logged in; SCIM endpoints are served
at each connection's ``endpointPath`` with an SQLite database (``--database``, in memory by default).
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import secrets

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from keyplane import __version__
from keyplane.app.web import ASGIApp, Keyplane


def build_app(bundle: str, database_url: str = "sqlite://", secret_key: str | None = None) -> ASGIApp:
    kp = Keyplane(
        bundle,
        database_url=database_url,
        secret_key=secret_key or os.environ.get("KEYPLANE_SECRET_KEY") or secrets.token_urlsafe(32),
    )

    async def home(request: Request) -> HTMLResponse:
        user = kp.current_user(request)
        email = request.query_params.get("email", "")
        parts = [
            f"<h1>Keyplane app demo {html.escape(__version__)}</h1>",
            f"<p>Logged in: {html.escape(str(user)) if user else 'nobody'}</p>",
            '<form><input name="email" placeholder="you@example.com"><button>Route</button></form>',
        ]
        if email:
            route = kp.route(email)
            parts.append(f"<pre>{html.escape(str(route.as_dict()))}</pre>")
            if route.login_path:
                parts.append(
                    f'<a href="{html.escape(route.login_path)}?email={html.escape(email)}">'
                    f"Log in with {html.escape(route.identity_provider or '')}</a>"
                )
        scim = "".join(
            f"<li>{html.escape(c.name)}: {html.escape(c.endpoint_path)}</li>" for c in kp.bundle.scim.values()
        )
        parts.append(f"<h2>SCIM endpoints</h2><ul>{scim}</ul>")
        return HTMLResponse("".join(parts))

    app = Starlette(routes=[Route("/", home)])
    app.state.keyplane = kp
    return kp.wrap(app)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keyplane app-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, help="path of identity.json")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--database",
        default=os.environ.get("KEYPLANE_DATABASE_URL", "sqlite://"),
        help="SQLAlchemy URL, e.g. postgresql://user:pass@host/db (default: $KEYPLANE_DATABASE_URL, else in memory)",
    )
    args = parser.parse_args(argv)
    if not os.path.exists(args.bundle):
        parser.error(f"no such bundle file: {args.bundle}")
    logging.basicConfig(level=logging.INFO)
    import uvicorn

    uvicorn.run(build_app(args.bundle, args.database), host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

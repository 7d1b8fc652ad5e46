"""Starlette wiring: the SSO routes, the SCIM endpoints, and the :class:`Keyplane` facade.

Routes (relative to where the app is served):
``GET /sso/route?email=``, ``GET /sso/saml/<idp>/login``, ``POST /sso/saml/<idp>/acs``,
``GET /sso/saml/<idp>/metadata``, ``GET /sso/oidc/<idp>/login``, ``GET /sso/oidc/<idp>/callback``,
single logout (``GET /sso/saml/<idp>/logout``, ``GET|POST /sso/saml/<idp>/slo``,
``GET /sso/oidc/<idp>/logout``, ``GET /sso/oidc/<idp>/logged-out``), and SCIM at every connection's
``endpointPath``.
"""

from __future__ import annotations

import hmac
import inspect
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import parse_qsl

import httpx
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from keyplane.app.audit import Refusals
from keyplane.app.body import DEFAULT_MAX_BODY_SIZE, BodyTooLarge, ClientDisconnected, read_body
from keyplane.app.bundle import Bundle, BundleStore
from keyplane.app.clock import Clock, utcnow
from keyplane.app.errors import LoginError
from keyplane.app.login import LoginResult, resolve_login
from keyplane.app.login_state import PENDING_MAX_AGE, LoginStateStore
from keyplane.app.logout import LogoutEvent, OnLogout
from keyplane.app.metrics import UNKNOWN, AppMetrics
from keyplane.app.oidc import OidcLogin, PendingOidcLogin
from keyplane.app.replay import SqlReplayCache, id_token_identifier
from keyplane.app.roles import effective_role
from keyplane.app.routing import LoginRoute, LoginRouter
from keyplane.app.saml import SamlLogin
from keyplane.app.saml_logout import IdPLogoutResponse, SamlLogout
from keyplane.app.scim import ScimRouter
from keyplane.app.storage import ChangeListener, Storage

log = logging.getLogger("keyplane.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
OnLogin = Callable[[Request, LoginResult], "Response | Awaitable[Response | None] | None"]

SESSION_COOKIE = "keyplane_session"


def safe_next(value: str | None) -> str:
    """Only same-site relative paths are followed after a login (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _bundle_store(bundle: str | os.PathLike[str] | BundleStore | Bundle) -> BundleStore:
    """The store a :class:`Keyplane` reads its bundle from: given, around a fixed bundle, or on a file."""
    if isinstance(bundle, BundleStore):
        return bundle
    if isinstance(bundle, Bundle):
        return BundleStore.from_bundle(bundle)
    return BundleStore(Path(bundle))


class Keyplane:
    """Everything the operator declared, for one web app.

    :param bundle: the mounted ``identity.json`` path (reloaded when it changes), a
        :class:`BundleStore`, or a fixed :class:`Bundle`.
    :param database_url: SQLAlchemy URL of the app's tables (SCIM store, logins in progress, replay store):
        ``sqlite:///keyplane.db``, or ``postgresql://…`` for several replicas; defaults to
        ``$KEYPLANE_DATABASE_URL``, else an in-memory SQLite database. The tables are created or upgraded
        here (Alembic, under a lock: replicas starting together take turns).
    :param secret_key: signs the login cookies; defaults to ``$KEYPLANE_SECRET_KEY``.
    :param on_login: ``(request, LoginResult) -> Response | None``; None keeps the default
        (a signed ``keyplane_session`` cookie and a redirect to ``next``). What single logout needs
        later (SAML NameID, SessionIndex, NameID format; the OIDC ID token) is in
        ``request.state.keyplane_sso`` while it runs.
    :param on_logout: ``(request, LogoutEvent) -> None``: end the app's own session(s) of the user
        (see :mod:`keyplane.app.logout`); the default ``keyplane_session`` cookie is always deleted.
    :param metrics: count logins, SCIM requests and replays into :class:`~keyplane.app.metrics.AppMetrics`
        (opt-in; :meth:`wrap` serves them at ``metrics.path``).
    :param max_body_size: the largest request body any route reads (SAML POST, SCIM), in bytes;
        a larger one gets 413 without being read.
    :param refusals: where refused logins and SCIM requests are logged and counted
        (:attr:`refusals`; a fresh :class:`~keyplane.app.audit.Refusals` by default).
    """

    def __init__(
        self,
        bundle: str | os.PathLike[str] | BundleStore | Bundle,
        *,
        database_url: str | None = None,
        storage: Storage | None = None,
        secret_key: str | None = None,
        clock: Clock = utcnow,
        on_login: OnLogin | None = None,
        on_logout: OnLogout | None = None,
        http: httpx.AsyncClient | None = None,
        session_max_age: int = 8 * 3600,
        metrics: AppMetrics | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        refusals: Refusals | None = None,
    ) -> None:
        self.bundles = _bundle_store(bundle)
        key = secret_key or os.environ.get("KEYPLANE_SECRET_KEY")
        if not key:
            raise ValueError("Keyplane needs a secret_key (or $KEYPLANE_SECRET_KEY) to sign login cookies")
        self.clock = clock
        self.max_body_size = max_body_size
        self.refusals = refusals if refusals is not None else Refusals()
        self.storage = storage or Storage(database_url or os.environ.get("KEYPLANE_DATABASE_URL") or "sqlite://")
        self.storage.role_of = self._role_of
        self.router = LoginRouter(self.bundles)
        self.scim = ScimRouter(
            self.bundles, self.storage, clock=clock, max_body_size=max_body_size, refusals=self.refusals
        )
        # Shared by every replica on the database: a login started on one finishes on any other, and an
        # assertion, callback or ID token used on one is refused on all.
        self.replay = SqlReplayCache(self.storage, clock=clock)
        self.logins = LoginStateStore(self.storage, clock=clock)
        self.metrics = metrics
        if metrics is not None:
            self.scim.metrics = metrics
            self.refusals.on_refusal(metrics.refused)
        self.on_login = on_login
        self.on_logout = on_logout
        self.session_max_age = session_max_age
        self._http = http
        self._signer = URLSafeTimedSerializer(key, salt="keyplane.app")
        self._saml: dict[str, tuple[Bundle, SamlLogin]] = {}
        self._oidc: dict[str, tuple[Bundle, OidcLogin]] = {}
        self.sso = Starlette(routes=self._sso_routes())

    def _sso_routes(self) -> list[Route]:
        return [
            Route("/sso/route", self._route, methods=["GET"]),
            Route("/sso/saml/{name}/login", self._saml_login, methods=["GET"]),
            Route("/sso/saml/{name}/acs", self._saml_acs, methods=["POST"]),
            Route("/sso/saml/{name}/metadata", self._saml_metadata, methods=["GET"]),
            Route("/sso/oidc/{name}/login", self._oidc_login, methods=["GET"]),
            Route("/sso/oidc/{name}/callback", self._oidc_callback, methods=["GET"]),
            Route("/sso/saml/{name}/logout", self._saml_logout, methods=["GET"]),
            Route("/sso/saml/{name}/slo", self._saml_slo, methods=["GET", "POST"]),
            Route("/sso/oidc/{name}/logout", self._oidc_logout, methods=["GET"]),
            Route("/sso/oidc/{name}/logged-out", self._oidc_logged_out, methods=["GET"]),
        ]

    # -- pure API ------------------------------------------------------------------

    @property
    def bundle(self) -> Bundle:
        return self.bundles.bundle

    def route(self, email: str) -> LoginRoute:
        """Which IdP an email logs in with, and whether the app's local login is allowed."""
        return self.router.route(email)

    def local_login_allowed(self, email: str) -> bool:
        return self.router.local_login_allowed(email)

    def add_listener(self, listener: ChangeListener) -> None:
        """Mirror SCIM changes into the app's own user table (see :class:`UserChange`)."""
        self.storage.add_listener(listener)

    def _role_of(self, partition: str, groups: Any, active: bool) -> str | None:
        bundle = self.bundles.bundle
        connection = bundle.scim.get(partition)
        if connection is None:
            return None
        return effective_role(bundle.roles, connection, groups, active=active)

    def saml(self, name: str) -> SamlLogin:
        bundle = self.bundle
        idp = bundle.identity_providers.get(name)
        if idp is None or idp.protocol != "SAML":
            raise LoginError(f"no SAML identity provider named {name}", status=404, code="login.unknown_idp")
        cached = self._saml.get(name)
        if cached is None or not _same_bundle(cached[0], bundle):
            try:
                cached = (bundle, SamlLogin(idp, self.replay))
            except Exception as exc:  # python3-saml's settings errors name fields, never key material
                raise LoginError(
                    f"the SAML settings of {name} are invalid: {exc}", status=500, code="saml.invalid_settings"
                ) from exc
            self._saml[name] = cached
        return cached[1]

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        return self._http

    def oidc(self, name: str) -> OidcLogin:
        bundle = self.bundle
        idp = bundle.identity_providers.get(name)
        if idp is None or idp.protocol != "OIDC":
            raise LoginError(f"no OIDC identity provider named {name}", status=404, code="login.unknown_idp")
        cached = self._oidc.get(name)
        if cached is None or not _same_bundle(cached[0], bundle):
            # Kept while the bundle is: its discovery document and JWKS cache live with it.
            cached = (bundle, OidcLogin(idp, self.http, clock=self.clock, replay=self.replay))
            self._oidc[name] = cached
        return cached[1]

    def current_user(self, request: Request) -> dict[str, Any] | None:
        """The user of the ``keyplane_session`` cookie the default ``on_login`` sets, if valid."""
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            return cast(
                dict[str, Any], self._signer.loads(raw, max_age=self.session_max_age, salt="keyplane.session")
            )
        except BadSignature:
            return None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    # -- ASGI ------------------------------------------------------------------------

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """Serve ``/sso/*`` and the SCIM endpoints in front of ``app``; everything else goes to it."""
        scim = ScimRouter.__new__(ScimRouter)
        scim.__dict__.update(self.scim.__dict__)
        scim.fallback = app

        metrics_path = self.metrics.path if self.metrics is not None else None
        metrics_app = self.metrics.asgi() if self.metrics is not None else None

        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if metrics_app is not None and scope["type"] == "http" and _path(scope) == metrics_path:
                await metrics_app(scope, receive, send)
                return
            if scope["type"] == "http" and _path(scope).startswith("/sso/"):
                await self.sso(scope, receive, send)  # type: ignore[arg-type]
                return
            await scim(scope, receive, send)

        return wrapped

    def asgi(self) -> ASGIApp:
        """A standalone ASGI app with only Keyplane's routes (404 elsewhere)."""

        async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "lifespan":
                message = await receive()
                while True:
                    reply = (
                        "lifespan.startup.complete"
                        if message["type"] == "lifespan.startup"
                        else "lifespan.shutdown.complete"
                    )
                    await send({"type": reply})
                    if reply == "lifespan.shutdown.complete":
                        return
                    message = await receive()
            response = PlainTextResponse("Not Found", status_code=404)
            await response(scope, receive, send)  # type: ignore[arg-type]

        return self.wrap(not_found)

    # -- handlers ---------------------------------------------------------------------

    async def _route(self, request: Request) -> Response:
        email = request.query_params.get("email", "")
        if "@" not in email:
            return JSONResponse({"error": "pass ?email=user@domain"}, status_code=400)
        return JSONResponse(self.route(email).as_dict())

    def _cookie_secure(self, request: Request) -> bool:
        return request.url.scheme == "https"

    def _count_login(self, name: str, result: str) -> None:
        if self.metrics is None:
            return
        idp = self.bundle.identity_providers.get(name)  # names from URLs: only the bundle's are labels
        self.metrics.login(name if idp else UNKNOWN, idp.protocol if idp else UNKNOWN, result)
        if result.endswith(".replay"):  # saml.replay, oidc.replay: whichever replay store the app uses
            self.metrics.replay_refused(result)

    def _unreachable(self, exc: httpx.HTTPError, name: str, failed: str) -> Response:
        """The OIDC provider could not be reached: a 502 (the exception's type only, never its text)."""
        return self._refuse(
            LoginError(f"{failed}: {type(exc).__name__}", status=502, code="oidc.provider_unreachable"), name
        )

    def _refuse(self, exc: LoginError, name: str) -> Response:
        self._count_login(name, exc.code)
        self.refusals.refuse(exc.code, f"login through {name}: {exc.reason}", source=name)
        return PlainTextResponse(f"Login refused: {exc.reason}", status_code=exc.status)

    async def _form(self, request: Request) -> dict[str, str]:
        """An url-encoded form body (the SAML HTTP-POST binding), read within ``max_body_size``."""
        try:
            body = await read_body(request.receive, request.scope["headers"], self.max_body_size)
        except BodyTooLarge as exc:
            raise LoginError(
                f"{exc} (max_body_size of keyplane.app)", status=413, code="http.body_too_large"
            ) from exc
        except ClientDisconnected as exc:
            raise LoginError("the client went away while sending", status=400, code="http.disconnected") from exc
        try:
            pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, max_num_fields=100)
        except ValueError as exc:
            raise LoginError("the form has too many fields", status=400, code="http.bad_form") from exc
        return dict(pairs)

    async def _saml_login(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            saml = self.saml(name)
            next_url = safe_next(request.query_params.get("next"))
            url, request_id = saml.login_url(next_url)
        except LoginError as exc:
            return self._refuse(exc, name)
        response = RedirectResponse(url, status_code=302)
        handle = self.logins.put(f"saml:{name}", {"rid": request_id, "next": next_url})
        pending = self._signer.dumps(handle, salt=f"keyplane.saml.{name}")
        # SameSite=None: the IdP posts the response cross-site, and the cookie must come along.
        response.set_cookie(
            f"keyplane_saml_{name}",
            pending,
            max_age=PENDING_MAX_AGE,
            path=f"/sso/saml/{name}/",
            httponly=True,
            secure=self._cookie_secure(request),
            samesite="none" if self._cookie_secure(request) else "lax",
        )
        return response

    async def _saml_acs(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            form = await self._form(request)
            saml_response = form.get("SAMLResponse")
            if not saml_response:
                raise LoginError("the POST has no SAMLResponse", status=400, code="saml.missing_response")
        except LoginError as exc:
            return self._refuse(exc, name)
        request_id: str | None = None
        next_url = safe_next(str(form.get("RelayState") or "/"))
        _, pending = self._take_pending(request, "saml", name)
        if pending is not None:
            request_id, next_url = str(pending["rid"]), safe_next(pending["next"])
        try:
            identity = self.saml(name).consume(saml_response, request_id)
            result = resolve_login(
                self.bundle, self.storage, name, identity.email, identity.groups, subject=identity.name_id
            )
        except LoginError as exc:
            return self._refuse(exc, name)
        sso = {
            "nameId": identity.name_id, "nameIdFormat": identity.name_id_format, "sessionIndex": identity.session_index
        }
        response = await self._logged_in(request, result, next_url, sso)
        response.delete_cookie(f"keyplane_saml_{name}", path=f"/sso/saml/{name}/")
        return response

    async def _saml_metadata(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            return Response(self.saml(name).metadata(), media_type="application/samlmetadata+xml")
        except LoginError as exc:
            return self._refuse(exc, name)

    async def _oidc_login(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            url, pending = await self.oidc(name).start(
                safe_next(request.query_params.get("next")), login_hint=request.query_params.get("email")
            )
        except LoginError as exc:
            return self._refuse(exc, name)
        except httpx.HTTPError as exc:
            return self._unreachable(exc, name, "OIDC discovery failed")
        response = RedirectResponse(url, status_code=302)
        handle = self.logins.put(f"oidc:{name}", pending.as_dict())
        response.set_cookie(
            f"keyplane_oidc_{name}",
            self._signer.dumps(handle, salt=f"keyplane.oidc.{name}"),
            max_age=PENDING_MAX_AGE,
            path=f"/sso/oidc/{name}/",
            httponly=True,
            secure=self._cookie_secure(request),
            samesite="lax",
        )
        return response

    async def _oidc_callback(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            cookie, started = self._take_pending(request, "oidc", name)
            if cookie == "absent":
                raise LoginError(
                    "no OIDC login in progress in this browser", status=400, code="oidc.no_pending_login"
                )
            if cookie == "invalid":
                raise LoginError("the OIDC login cookie is invalid or expired", status=400, code="oidc.bad_cookie")
            if started is None:
                # A valid cookie outlives its login only when the callback already took it (on any replica).
                raise LoginError(
                    "this OIDC login was already finished (replay) or has expired; start the login again",
                    status=400,
                    code="oidc.replay",
                )
            pending = PendingOidcLogin.from_dict(started)
            identity = await self.oidc(name).finish(dict(request.query_params), pending)
            if not self.replay.remember(*id_token_identifier(name, identity.claims)):
                raise LoginError("this ID token was already used (replay)", code="oidc.replay")
            result = resolve_login(
                self.bundle, self.storage, name, identity.email, identity.groups, subject=identity.subject
            )
        except LoginError as exc:
            return self._refuse(exc, name)
        except httpx.HTTPError as exc:
            return self._unreachable(exc, name, "OIDC provider unreachable")
        sso = {"sub": identity.subject, "idToken": identity.id_token}
        response = await self._logged_in(request, result, pending.next, sso)
        response.delete_cookie(f"keyplane_oidc_{name}", path=f"/sso/oidc/{name}/")
        return response

    # -- single logout ------------------------------------------------------------------

    def saml_logout(self, name: str) -> SamlLogout:
        return SamlLogout(self.saml(name))

    async def _ended(self, request: Request, event: LogoutEvent) -> None:
        """Let the app end its own session(s) of the user."""
        log.info("logout of %s through %s (%s-initiated)", event.email or event.subject, event.identity_provider,
                 event.initiated_by)
        if self.on_logout is not None:
            outcome = self.on_logout(request, event)
            if inspect.isawaitable(outcome):
                await outcome

    def _session_of(self, request: Request, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The default session's user and SSO facts, when that user logged in through ``name``."""
        user = self.current_user(request) or {}
        if user.get("identityProvider") != name:
            return {}, {}
        sso = user.get("sso")
        return user, sso if isinstance(sso, dict) else {}

    def _pending_cookie(
        self, response: Response, request: Request, cookie: str, path: str, value: dict[str, Any]
    ) -> None:
        secure = self._cookie_secure(request)
        # SameSite=None: the IdP may answer with a cross-site POST, and the cookie must come along.
        response.set_cookie(
            cookie, self._signer.dumps(value, salt=f"keyplane.{cookie}"), max_age=PENDING_MAX_AGE, path=path,
            httponly=True, secure=secure, samesite="none" if secure else "lax",
        )

    def _pending(self, request: Request, cookie: str) -> dict[str, Any] | None:
        raw = request.cookies.get(cookie)
        if not raw:
            return None
        try:
            return cast(dict[str, Any], self._signer.loads(raw, max_age=PENDING_MAX_AGE, salt=f"keyplane.{cookie}"))
        except BadSignature:
            return None

    async def _saml_logout(self, request: Request) -> Response:
        """App-initiated: end the app session, then the IdP session (signed LogoutRequest) when the IdP has SLO."""
        name = request.path_params["name"]
        next_url = safe_next(request.query_params.get("next"))
        try:
            logout = self.saml_logout(name)
        except LoginError as exc:
            return self._refuse(exc, name)
        user, sso = self._session_of(request, name)
        await self._ended(request, LogoutEvent(
            name, "SAML", sso.get("nameId"), "app", tuple(filter(None, [sso.get("sessionIndex")])), user.get("email")
        ))
        response: Response = RedirectResponse(next_url, status_code=303)
        if sso.get("nameId") and logout.idp_supports_slo:
            url, request_id = logout.start(sso["nameId"], sso.get("sessionIndex"), sso.get("nameIdFormat"), next_url)
            response = RedirectResponse(url, status_code=302)
            cookie = f"keyplane_slo_{name}"
            self._pending_cookie(response, request, cookie, f"/sso/saml/{name}/", {"rid": request_id, "next": next_url})
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def _saml_slo(self, request: Request) -> Response:
        """The IdP's LogoutResponse to our request, or its own LogoutRequest (HTTP-Redirect or HTTP-POST)."""
        name = request.path_params["name"]
        cookie = f"keyplane_slo_{name}"
        pending = self._pending(request, cookie) or {}
        try:
            posted = request.method == "POST"
            params = await self._form(request) if posted else dict(request.query_params)
            if "SAMLResponse" in params and not pending.get("rid"):
                raise LoginError("no logout in progress in this browser", status=400, code="saml.slo_unexpected")
            outcome = self.saml_logout(name).receive(params, posted=posted, request_id=pending.get("rid"))
        except LoginError as exc:
            return self._refuse(exc, name)
        if isinstance(outcome, IdPLogoutResponse):
            response = RedirectResponse(safe_next(pending.get("next")), status_code=303)
            response.delete_cookie(cookie, path=f"/sso/saml/{name}/")
            return response
        user, sso = self._session_of(request, name)
        await self._ended(request, LogoutEvent(
            name, "SAML", outcome.name_id, "idp", outcome.session_indexes, user.get("email")
        ))
        response = RedirectResponse(outcome.reply, status_code=302)
        # The default session ends only if it is this IdP's session of that user (or unreadable).
        if self.current_user(request) is None or (user and sso.get("nameId") == outcome.name_id):
            response.delete_cookie(SESSION_COOKIE)
        return response

    async def _oidc_logout(self, request: Request) -> Response:
        """App-initiated: end the app session, then the provider's (RP-initiated logout) when it offers one."""
        name = request.path_params["name"]
        next_url = safe_next(request.query_params.get("next"))
        user, sso = self._session_of(request, name)
        try:
            oidc = self.oidc(name)
            await self._ended(request, LogoutEvent(name, "OIDC", sso.get("sub"), "app", (), user.get("email")))
            state = secrets.token_urlsafe(24)
            url = await oidc.logout_url(sso.get("idToken"), state)
        except LoginError as exc:
            return self._refuse(exc, name)
        except httpx.HTTPError as exc:
            return self._unreachable(exc, name, "OIDC discovery failed")
        response: Response = RedirectResponse(next_url, status_code=303)
        if url is not None:
            response = RedirectResponse(url, status_code=302)
            self._pending_cookie(
                response, request, f"keyplane_oidc_logout_{name}", f"/sso/oidc/{name}/",
                {"state": state, "next": next_url},
            )
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def _oidc_logged_out(self, request: Request) -> Response:
        """The provider's redirect after logout: back to where the app asked, if the state is this browser's."""
        name = request.path_params["name"]
        cookie = f"keyplane_oidc_logout_{name}"
        pending = self._pending(request, cookie) or {}
        state = request.query_params.get("state", "")
        known = str(pending.get("state") or "")
        next_url = safe_next(pending.get("next")) if known and hmac.compare_digest(state, known) else "/"
        response = RedirectResponse(next_url, status_code=303)
        response.delete_cookie(cookie, path=f"/sso/oidc/{name}/")
        return response

    def _take_pending(
        self, request: Request, protocol: str, name: str
    ) -> tuple[Literal["absent", "invalid", "valid"], dict[str, Any] | None]:
        """The browser's login cookie for this IdP (absent, invalid or expired, valid), and the login it
        started, taken from the shared store whichever replica started it (None once taken or expired)."""
        raw = request.cookies.get(f"keyplane_{protocol}_{name}")
        if not raw:
            return "absent", None
        try:
            handle = self._signer.loads(raw, max_age=PENDING_MAX_AGE, salt=f"keyplane.{protocol}.{name}")
        except BadSignature:
            return "invalid", None
        if not isinstance(handle, str):  # a cookie signed by a version that kept the whole login in it
            return "invalid", None
        return "valid", self.logins.take(f"{protocol}:{name}", handle)

    async def _logged_in(
        self, request: Request, result: LoginResult, next_url: str, sso: dict[str, Any]
    ) -> Response:
        self._count_login(result.identity_provider, "ok")
        log.info("login of %s through %s, role %s", result.email, result.identity_provider, result.role)
        request.state.keyplane_sso = sso
        if self.on_login is not None:
            outcome = self.on_login(request, result)
            if inspect.isawaitable(outcome):
                outcome = await outcome
            if outcome is not None:
                return cast(Response, outcome)
        response = RedirectResponse(next_url, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self._signer.dumps({**result.as_dict(), "sso": sso}, salt="keyplane.session"),
            max_age=self.session_max_age,
            httponly=True,
            secure=self._cookie_secure(request),
            samesite="lax",
        )
        return response


def _same_bundle(cached: Bundle, current: Bundle) -> bool:
    """The same bundle: the very object (a fixed or built bundle), or the same identity.json bytes."""
    return cached is current or bool(current.sha256 and cached.sha256 == current.sha256)


def _path(scope: Scope) -> str:
    root = scope.get("root_path", "")
    path: str = scope["path"]
    return path.removeprefix(root) if root else path

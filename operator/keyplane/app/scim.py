"""The SCIM 2.0 endpoint: scim2-server's protocol over the SQL storage, with the IdPs' dialects.

* :class:`KeyplaneScimService` normalises what Entra ID and Okta actually send before
  scim2-models validates it; the rest of their dialects is covered by the service's
  :class:`~scim2_models.ScimPolicy` (``remove`` with a ``value``, path filters that match nothing).
* :class:`ScimEndpoint` is the ASGI application of one connection: bearer token checked
  against the bundle's ``tokenHashes`` *before* the body is read, the body capped
  (``max_body_size``, 413) and its JSON nesting limited (400 ``invalidSyntax``); the synchronous
  scim2-server handler runs in a worker thread.
* :class:`ScimRouter` serves every connection at its ``endpointPath``, following the bundle.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import replace
from typing import Any, cast
from urllib.parse import parse_qsl

import anyio.to_thread
from scim2_models import (
    AuthenticationScheme,
    ChangePassword,
    External,
    InvalidSyntaxException,
    PatchOp,
    PayloadTooLargeException,
    Reference,
    Resource,
    ResourceType,
    SCIMException,
    ScimPolicy,
    ScimProvider,
    UnauthorizedException,
)
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.applications.base import BaseApplication
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)

from keyplane.app.audit import Refusals
from keyplane.app.body import (
    DEFAULT_MAX_BODY_SIZE,
    MAX_JSON_DEPTH,
    BodyTooLarge,
    ClientDisconnected,
    json_too_deep,
    read_body,
)
from keyplane.app.bundle import BundleStore, ScimConnection
from keyplane.app.clock import Clock, utcnow
from keyplane.app.metrics import AppMetrics
from keyplane.app.scim_storage import LockingScimHandler, SqlScimStorage, email_values
from keyplane.app.storage import Storage, UserChange
from keyplane.app.tokens import parse_bearer, token_valid
from keyplane.policy.access import may_act_for_user
from keyplane.policy.email import try_canonical_email

log = logging.getLogger("keyplane.app.scim")

ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: What real IdPs need beyond the strict reading of the RFCs.
IDP_POLICY = ScimPolicy(
    # Okta and Entra send attributes of their own (custom extensions): drop them, do not fail.
    unknown=ScimPolicy.Unknown.ignore,
    # Entra: {"op": "Remove", "path": "members", "value": [{"value": "<id>"}]} removes that member.
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    # Entra: {"op": "Add", "path": "emails[type eq \"work\"].value", ...} creates the entry.
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)

BEARER = AuthenticationScheme(
    type=AuthenticationScheme.Type.oauthbearertoken,
    name="OAuth Bearer Token",
    description="The token of the ScimConnection, from its Secret",
    spec_uri=Reference[External]("https://datatracker.ietf.org/doc/html/rfc6750"),
    primary=True,
)


def build_provider() -> ScimProvider:
    """Users (with the enterprise extension) and Groups; PATCH, filter, sort, ETag, bulk."""
    config = load_default_service_provider_config()
    config.authentication_schemes = [BEARER]
    # Passwords are never stored: SSO users log in through their IdP.
    config.change_password = ChangePassword(supported=False)
    return ScimProvider.from_discovery(
        load_default_schemas().values(),
        load_default_resource_types().values(),
        config=config,
        policy=IDP_POLICY,
    )


def _normalise_operation(op: dict[str, Any], resource_type: str) -> dict[str, Any]:
    value = op.get("value")
    path = op.get("path")
    # Entra: the manager as a bare id string.
    if (
        isinstance(path, str)
        and path.lower() == f"{ENTERPRISE_URN}:manager".lower()
        and isinstance(value, str)
    ):
        op = {**op, "value": {"value": value}}
    if isinstance(value, dict) and not path:
        cleaned = dict(value)
        # Okta's group rename sends the read-only id along: it cannot change, drop it.
        cleaned.pop("id", None)
        # Entra, path-less: {"urn:...:enterprise:2.0:User:manager": "<id>"}.
        for key, item in list(cleaned.items()):
            if key.lower() == f"{ENTERPRISE_URN}:manager".lower() and isinstance(item, str):
                cleaned[key] = {"value": item}
            if key == ENTERPRISE_URN and isinstance(item, dict) and isinstance(item.get("manager"), str):
                cleaned[key] = {**item, "manager": {"value": item["manager"]}}
        op = {**op, "value": cleaned}
    # Entra sends single-valued strings wrapped in a list for some attributes.
    if (
        isinstance(path, str)
        and path in ("displayName", "externalId", "userName")
        and isinstance(value, list)
        and len(value) == 1
        and isinstance(value[0], dict)
        and set(value[0]) == {"value"}
    ):
        op = {**op, "value": value[0]["value"]}
    return op


class KeyplaneScimService(ScimService):
    """scim2-server's service with the normalisation the IdPs' requests need."""

    def read_patch(self, resource_type: ResourceType, body: bytes, content_type: str | None) -> PatchOp[Any]:
        try:
            document = json.loads(body)
        except ValueError:
            return super().read_patch(resource_type, body, content_type)
        if isinstance(document, dict):
            operations = document.get("Operations")
            if isinstance(operations, list):
                document["Operations"] = [
                    _normalise_operation(op, cast(str, resource_type.name)) if isinstance(op, dict) else op
                    for op in operations
                ]
                body = json.dumps(document).encode()
        return super().read_patch(resource_type, body, content_type)

    def read_creation(
        self, resource_type: ResourceType, body: bytes, content_type: str | None
    ) -> Resource[Any]:
        return super().read_creation(resource_type, _normalise_resource(body), content_type)

    def read_replacement(
        self, resource_type: ResourceType, body: bytes, content_type: str | None
    ) -> Resource[Any]:
        return super().read_replacement(resource_type, _normalise_resource(body), content_type)


def _normalise_resource(body: bytes) -> bytes:
    """Entra's manager as a bare string, in POST/PUT bodies."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if isinstance(document, dict):
        extension = document.get(ENTERPRISE_URN)
        if isinstance(extension, dict) and isinstance(extension.get("manager"), str):
            extension["manager"] = {"value": extension["manager"]}
            return json.dumps(document).encode()
    return body


TokenSource = Callable[[], ScimConnection | None]


class ScimEndpoint(ASGIApplication):
    """The ASGI SCIM application of one connection.

    Unlike scim2-server's ASGI application, it authenticates a request before reading its body
    (an anonymous client cannot make it read anything), reads at most ``max_body_size`` bytes
    (413 past it, Content-Length or not), and refuses JSON nested deeper than
    :data:`~keyplane.app.body.MAX_JSON_DEPTH` with 400 ``invalidSyntax``.

    :param connection: returns the connection's current settings (None once it left the bundle).
    :param refusals: where refused requests are logged and counted.
    """

    def __init__(
        self,
        storage: SqlScimStorage,
        provider: ScimProvider,
        service: ScimService,
        connection: TokenSource,
        clock: Clock = utcnow,
        *,
        name: str = "",
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        refusals: Refusals | None = None,
    ) -> None:
        BaseApplication.__init__(self, provider, service)
        self.storage = storage  # type: ignore[assignment]
        self.sync_handler = LockingScimHandler(service, storage)
        self.connection = connection
        self.clock = clock
        self.name = name
        self.max_body_size = max_body_size
        self.refusals = refusals if refusals is not None else Refusals()

    @staticmethod
    def get_base_url(scope: Scope) -> str:  # type: ignore[override]
        """The endpoint path is the SCIM root: ``/scim/v2/okta``, not ``/scim/v2/okta/v2``."""
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode()
        if not host and scope.get("server"):
            host = "{}:{}".format(*scope["server"])
        return f"{scope['scheme']}://{host}{scope.get('root_path', '')}"

    def request_head(self, scope: Scope) -> ScimRequest:
        """The SCIM request of an ASGI request, without its body (read later, once authenticated)."""
        return ScimRequest(
            method=scope["method"],
            base_url=self.get_base_url(scope),
            path=self.split_path(self.get_path(cast(dict[str, Any], scope))),
            query=dict(parse_qsl(scope["query_string"].decode(), keep_blank_values=True)),
            headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]],
        )

    def check_auth(self, request: ScimRequest) -> None:
        connection = self.connection()
        token = parse_bearer(request.header("Authorization"))
        if connection is None or not token_valid(token, connection.token_hashes, self.clock()):
            raise UnauthorizedException(detail="A valid bearer token is required")
        request.subject = connection

    def authenticate(self, request: ScimRequest) -> None:
        """Check the bearer token; every path but ``/ServiceProviderConfig`` needs it (unknown ones too)."""
        try:
            needed = self.needs_auth(request)
        except SCIMException:
            needed = True  # an unknown path: the 404 is for authenticated clients only
        if needed:
            self.check_auth(request)

    async def read_limited_body(self, scope: Scope, receive: Receive, request: ScimRequest) -> bytes:
        service_limit = self.service.max_body_size(request)
        if service_limit == 0:
            return b""  # the request fails whatever its body (unknown path, bulk unsupported)
        limit = self.max_body_size if service_limit is None else min(service_limit, self.max_body_size)
        try:
            body = await read_body(receive, scope["headers"], limit)
        except BodyTooLarge as exc:
            if service_limit is not None and service_limit <= self.max_body_size:
                raise self.service.payload_too_large(service_limit) from exc
            raise PayloadTooLargeException(
                detail=f"The request body is larger than {limit} bytes (max_body_size of keyplane.app)"
            ) from exc
        if json_too_deep(body):
            raise InvalidSyntaxException(detail=f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels")
        return body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == "lifespan":
            await self.serve_lifespan(receive, send)  # type: ignore[arg-type]
            return
        request = self.request_head(scope)
        try:
            self.authenticate(request)  # before a byte of the body is read
            request.body = await self.read_limited_body(scope, receive, request)
        except ClientDisconnected:
            return
        except Exception as exc:
            response = self.finalize_response(request, self.handle_exception(request, exc))
        else:
            response = await self.serve(request)
        await self.send_response(response, send)  # type: ignore[arg-type]

    async def dispatch_request(self, request: ScimRequest) -> ScimResponse:
        if request.subject is None and self.needs_auth(request):
            self.check_auth(request)
        return cast(ScimResponse, await anyio.to_thread.run_sync(self.sync_handler.handle, request))

    def handle_exception(self, request: ScimRequest, exception: Exception) -> ScimResponse:
        # The request (its Authorization header, its body) is never logged: only what was refused.
        # A 404 answers a lookup; it refuses nothing.
        if isinstance(exception, SCIMException) and 400 <= exception.status < 500 and exception.status != 404:
            code = REFUSAL_CODES.get(exception.status) or f"scim.{exception.scim_type or exception.status}"
            self.refusals.refuse(
                code, f"{request.method} {request.path}: {exception.status} {exception.detail or ''}", source=self.name
            )
        return super().handle_exception(request, exception)


#: Refusal codes of the statuses that have no scimType.
REFUSAL_CODES = {401: "scim.unauthorized", 403: "scim.forbidden", 413: "scim.body_too_large"}


class ScimRouter:
    """Serves each connection of the bundle at its ``endpointPath``; other paths go to ``fallback``.

    Endpoints are built on first use and follow the bundle: a connection removed from the bundle
    answers 404, a rotated token is honoured on the next request.

    :param max_body_size: the largest request body read, in bytes (413 past it).
    :param refusals: where refused requests are logged and counted.
    """

    def __init__(
        self,
        bundles: BundleStore,
        storage: Storage,
        *,
        clock: Clock = utcnow,
        fallback: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        refusals: Refusals | None = None,
    ) -> None:
        self.bundles = bundles
        self.storage = storage
        self.clock = clock
        self.fallback = fallback
        self.max_body_size = max_body_size
        self.refusals = refusals if refusals is not None else Refusals()
        self.metrics: AppMetrics | None = None  # set by Keyplane(metrics=...)
        self.provider = build_provider()
        self.service = KeyplaneScimService(self.provider)
        self._endpoints: dict[str, ScimEndpoint] = {}
        storage.screen_change = self.screen_change

    def refusal_for(self, name: str, data: dict[str, Any]) -> str | None:
        """Why connection ``name`` may not write, or act for, a User with these attributes (None: it may)."""
        bundle = self.bundles.bundle
        connection = bundle.scim.get(name)
        if connection is None:
            return "this SCIM connection is no longer in the identity bundle"
        decision = may_act_for_user(
            bundle.domains,
            connection.identity_provider,
            data.get("userName"),
            email_values(data),
            keyed_on_user_name=connection.user_identifier == "userName",
        )
        return None if decision.allowed else decision.reason

    def screen_change(self, change: UserChange) -> UserChange | None:
        """The change for the app's listeners, or None when its IdP no longer owns the user (logged, counted).

        Runs after commit for every change: a former owner of a domain can still deprovision the users
        it stored (in its own partition), but the app never hears of it, so it cannot raise or block
        the new owner's user of the same address.
        """
        user = change.user
        refusal = self.refusal_for(user.connection, user.attributes)
        if refusal is None:
            connection = self.bundles.bundle.scim[user.connection]
            keyed = connection.user_identifier == "userName"
            return replace(change, login=try_canonical_email(user.user_name) if keyed else user.email)
        self.refusals.refuse(
            "scim.foreign_user_change",
            f"{change.action} of user {user.id} not sent to the app: {refusal}",
            source=user.connection,
        )
        return None

    def storage_for(self, name: str) -> SqlScimStorage:
        """The scim2-server storage of a connection (also the API to seed or inspect it)."""
        return self.endpoint(name).storage  # type: ignore[return-value]

    def endpoint(self, name: str) -> ScimEndpoint:
        if name not in self._endpoints:

            def current() -> ScimConnection | None:
                return self.bundles.bundle.scim.get(name)

            def action() -> str:
                connection = current()
                return connection.deprovision_action if connection else "Deactivate"

            def address_guard(data: dict[str, Any]) -> str | None:
                # A refusal becomes a 400 invalidValue, logged and counted by handle_exception.
                return self.refusal_for(name, data)

            storage = SqlScimStorage(
                self.storage,
                name,
                self.provider,
                address_guard=address_guard,
                deprovision_action=action,
                clock=self.clock,
            )
            self._endpoints[name] = ScimEndpoint(
                storage,
                self.provider,
                self.service,
                current,
                self.clock,
                name=name,
                max_body_size=self.max_body_size,
                refusals=self.refusals,
            )
        return self._endpoints[name]

    def match(self, path: str) -> tuple[str, str] | None:
        """The connection serving a path, and the endpoint path (the mount point)."""
        best: tuple[str, str] | None = None
        for connection in self.bundles.bundle.scim.values():
            prefix = connection.endpoint_path.rstrip("/")
            if (path == prefix or path.startswith(prefix + "/")) and (
                best is None or len(prefix) > len(best[1])
            ):
                best = (connection.name, prefix)
        return best

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root = scope.get("root_path", "")
            path = scope["path"].removeprefix(root) if root else scope["path"]
            found = self.match(path)
            if found is not None:
                name, prefix = found
                child = dict(scope)
                child["root_path"] = root + prefix
                if self.metrics is not None:
                    await _measured(self.metrics, name, scope["method"], self.endpoint(name), child, receive, send)
                else:
                    await self.endpoint(name)(child, cast(Any, receive), cast(Any, send))
                return
        if self.fallback is not None:
            await self.fallback(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            await ASGIApplication.serve_lifespan(receive, send)  # type: ignore[arg-type]
            return
        await send(
            {"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"Not Found"})


async def _measured(
    metrics: AppMetrics, connection: str, method: str, app: Any, scope: Scope, receive: Receive, send: Send
) -> None:
    """Serve one SCIM request, counting it by status and timing it (not when the client went away unanswered)."""
    status: int | None = None

    async def sending(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        await send(message)

    started = time.perf_counter()
    try:
        await app(scope, receive, sending)
    except Exception:
        status = status or 500  # what the server answers when the app raises before responding
        raise
    finally:
        if status is not None:
            metrics.scim_request(connection, method, status, time.perf_counter() - started)

"""The SCIM 2.0 endpoint: scim2-server's protocol over the SQL storage, with the IdPs' dialects.

* :class:`KeyplaneScimService` normalises what Entra ID and Okta actually send before
  scim2-models validates it; the rest of their dialects is covered by the service's
  :class:`~scim2_models.ScimPolicy` (``remove`` with a ``value``, path filters that match nothing).
* :class:`ScimEndpoint` is the ASGI application of one connection: bearer token checked
  against the bundle's ``tokenHashes``; the synchronous scim2-server handler runs in a worker thread.
* :class:`ScimRouter` serves every connection at its ``endpointPath``, following the bundle.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

import anyio.to_thread
from scim2_models import (
    AuthenticationScheme,
    ChangePassword,
    External,
    PatchOp,
    Reference,
    Resource,
    ResourceType,
    ScimPolicy,
    ScimProvider,
    UnauthorizedException,
)
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.applications.base import BaseApplication
from scim2_server.handler import ScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)

from keyplane.app.bundle import BundleStore, ScimConnection
from keyplane.app.clock import Clock, utcnow
from keyplane.app.metrics import AppMetrics
from keyplane.app.scim_storage import SqlScimStorage
from keyplane.app.storage import Storage
from keyplane.app.tokens import parse_bearer, token_valid

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

    :param connection: returns the connection's current settings (None once it left the bundle).
    """

    def __init__(
        self,
        storage: SqlScimStorage,
        provider: ScimProvider,
        service: ScimService,
        connection: TokenSource,
        clock: Clock = utcnow,
    ) -> None:
        BaseApplication.__init__(self, provider, service)
        self.storage = storage  # type: ignore[assignment]
        self.sync_handler = ScimHandler(service, storage)
        self.connection = connection
        self.clock = clock

    @staticmethod
    def get_base_url(scope: Scope) -> str:  # type: ignore[override]
        """The endpoint path is the SCIM root: ``/scim/v2/okta``, not ``/scim/v2/okta/v2``."""
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode()
        if not host and scope.get("server"):
            host = "{}:{}".format(*scope["server"])
        return f"{scope['scheme']}://{host}{scope.get('root_path', '')}"

    def check_auth(self, request: ScimRequest) -> None:
        connection = self.connection()
        token = parse_bearer(request.header("Authorization"))
        if connection is None or not token_valid(token, connection.token_hashes, self.clock()):
            raise UnauthorizedException(detail="A valid bearer token is required")

    async def dispatch_request(self, request: ScimRequest) -> ScimResponse:
        if self.needs_auth(request):
            self.check_auth(request)
        return cast(ScimResponse, await anyio.to_thread.run_sync(self.sync_handler.handle, request))

    def handle_exception(self, request: ScimRequest, exception: Exception) -> ScimResponse:
        # The request (and its Authorization header) is never logged.
        return super().handle_exception(request, exception)


class ScimRouter:
    """Serves each connection of the bundle at its ``endpointPath``; other paths go to ``fallback``.

    Endpoints are built on first use and follow the bundle: a connection removed from the bundle
    answers 404, a rotated token is honoured on the next request.
    """

    def __init__(
        self,
        bundles: BundleStore,
        storage: Storage,
        *,
        clock: Clock = utcnow,
        fallback: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None,
    ) -> None:
        self.bundles = bundles
        self.storage = storage
        self.clock = clock
        self.fallback = fallback
        self.metrics: AppMetrics | None = None  # set by Keyplane(metrics=...)
        self.provider = build_provider()
        self.service = KeyplaneScimService(self.provider)
        self._endpoints: dict[str, ScimEndpoint] = {}

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

            storage = SqlScimStorage(
                self.storage, name, self.provider, deprovision_action=action, clock=self.clock
            )
            self._endpoints[name] = ScimEndpoint(storage, self.provider, self.service, current, self.clock)
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
    """Serve one SCIM request, counting it by status and timing it."""
    status = 500  # what the server answers when the app raises before responding

    async def sending(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        await send(message)

    started = time.perf_counter()
    try:
        await app(scope, receive, sending)
    finally:
        metrics.scim_request(connection, method, status, time.perf_counter() - started)

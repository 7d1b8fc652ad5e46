"""Prometheus metrics of the app side: logins, SCIM requests and their latency, replay refusals.

Opt-in: pass ``metrics=AppMetrics()`` to :class:`~keyplane.app.Keyplane`. The series live in the registry
you give (``AppMetrics(registry=prometheus_client.REGISTRY)`` adds them to the app's existing ``/metrics``)
or in a registry of their own, which ``Keyplane.wrap`` serves at ``path`` (default ``/metrics``; None
serves nothing, e.g. when you mount :meth:`AppMetrics.asgi` yourself).

Labels are bounded: IdP and connection names come from the bundle (an unknown name in a URL is counted
as ``(unknown)``), results are ``ok`` or a refusal code, methods the HTTP verbs. Never an email or a token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app

UNKNOWN = "(unknown)"
#: SCIM latency buckets, seconds: a SQL write through scim2-server takes milliseconds; a slow database more.
SCIM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AppMetrics:
    """The app side's counters and histograms, in ``registry`` (a new one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, path: str | None = "/metrics") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.path = path
        self.logins = Counter(
            "keyplane_app_logins", "SSO logins by IdP, protocol and result (ok, or the refusal code).",
            ["identity_provider", "protocol", "result"], registry=self.registry,
        )
        self.scim_requests = Counter(
            "keyplane_app_scim_requests", "SCIM requests by connection, method and HTTP status.",
            ["connection", "method", "status"], registry=self.registry,
        )
        self.scim_duration = Histogram(
            "keyplane_app_scim_request_duration_seconds", "SCIM request latency by connection and method.",
            ["connection", "method"], buckets=SCIM_BUCKETS, registry=self.registry,
        )
        self.replay_refusals = Counter(
            "keyplane_app_replay_refusals", "SAML assertions and OIDC logins refused because they were already "
            "used (replays), by protocol.", ["protocol"], registry=self.registry,
        )

        self.refusals = Counter(
            "keyplane_app_refusals", "Everything keyplane.app refused (logins and SCIM requests), by refusal code "
            "(keyplane.app.audit).", ["code"], registry=self.registry,
        )

    def refused(self, code: str, _source: str = "") -> None:
        """For :meth:`keyplane.app.audit.Refusals.on_refusal` (the source, a name from the URL, is not a label)."""
        self.refusals.labels(code).inc()

    def login(self, identity_provider: str, protocol: str, result: str) -> None:
        self.logins.labels(identity_provider, protocol, result).inc()

    def scim_request(self, connection: str, method: str, status: int, seconds: float) -> None:
        verb = method.upper() if method.upper() in _METHODS else "OTHER"
        self.scim_requests.labels(connection, verb, str(status)).inc()
        self.scim_duration.labels(connection, verb).observe(seconds)

    def replay_refused(self, code: str) -> None:
        """A login refused as a replay; ``code`` is its refusal code (``saml.replay``, ``oidc.replay``)."""
        protocol = code.split(".", 1)[0].upper()
        self.replay_refusals.labels(protocol if protocol in ("SAML", "OIDC") else UNKNOWN).inc()

    def asgi(self) -> ASGIApp:
        """The registry as an ASGI app (prometheus-client's exposition), to mount where you like."""
        app: ASGIApp = make_asgi_app(self.registry)
        return app

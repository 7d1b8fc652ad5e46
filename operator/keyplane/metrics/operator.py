"""The operator's registry and its event counters.

One `OperatorMetrics` per operator process (tests run several in one interpreter, so nothing lives in
prometheus-client's global registry). The writer, the API adapter and Kopf's watch logger report events
here; the per-object state is computed at scrape time by `StateCollector`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, disable_created_metrics

from .. import __version__
from .state import OperatorState, StateCollector
from .watch import WatchRestartCounter

#: Seconds: a namespace flush is a pure reconcile plus a few writes; an API server under load stretches it.
FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


class OperatorMetrics:
    """The registry of one operator process, with the counters its parts report to."""

    def __init__(self) -> None:
        # No `_created` series: Prometheus does not use them in the text format, and they double the output.
        # (A process-wide switch of prometheus-client; the operator process is ours.)
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        Info("keyplane_build", "The Keyplane version of this operator process.", registry=self.registry).info(
            {"version": __version__}
        )
        self.api_requests = Counter(
            "keyplane_api_requests", "Kubernetes API requests of the operator (besides Kopf's watches) "
            "by verb and HTTP status code ('error' when no answer came).",
            ["verb", "code"], registry=self.registry,
        )
        self.bundle_writes = Counter(
            "keyplane_bundle_writes", "Writes of identity bundle Secrets by operation (create, update, delete).",
            ["operation"], registry=self.registry,
        )
        self.flush_duration = Histogram(
            "keyplane_namespace_reconcile_duration_seconds",
            "Duration of one namespace flush: reconcile of every object of the namespace plus its writes.",
            buckets=FLUSH_BUCKETS, registry=self.registry,
        )
        self.watch_restarts = Counter(
            "keyplane_watch_restarts", "Kopf watch streams restarted (reason gone: 410, the resource version "
            "expired; inactive: no event within the inactivity timeout).",
            ["reason"], registry=self.registry,
        )
        self._watch_filter = WatchRestartCounter(lambda reason: self.watch_restarts.labels(reason).inc())
        self._state: StateCollector | None = None
        self.url: str | None = None  # where the registry is served, once it is

    def api_request(self, method: str, code: int | None) -> None:
        """Count one API request; `code` None means no HTTP answer (connection error, timeout)."""
        verb = _VERBS.get(method.upper(), method.lower())
        self.api_requests.labels(verb, "error" if code is None else str(code)).inc()

    def timed_flush(self, flush: Callable[[str], Awaitable[None]]) -> Callable[[str], Awaitable[None]]:
        """`flush(namespace)`, observed by the namespace reconcile duration histogram."""

        async def timed(namespace: str) -> None:
            with self.flush_duration.time():
                await flush(namespace)

        return timed

    def bundle_written(self, operation: str) -> None:
        self.bundle_writes.labels(operation).inc()

    def observe_state(self, state: Callable[[], OperatorState]) -> None:
        """Export the per-object series computed by `state()` at each scrape."""
        if self._state is not None:
            self.registry.unregister(self._state)
        self._state = StateCollector(state)
        self.registry.register(self._state)

    def count_watch_restarts(self, logger: logging.Logger | None = None) -> None:
        """Count Kopf's watch-stream restarts (Kopf has no hook for them: its log records are the signal)."""
        self._watch_filter.install(logger)

    def close(self) -> None:
        self._watch_filter.uninstall()

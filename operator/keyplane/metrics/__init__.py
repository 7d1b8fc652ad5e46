"""Prometheus metrics of the operator: a registry of its own, state computed at scrape time, served over HTTP.

`OperatorMetrics` holds the registry and the event counters (API requests, bundle writes, namespace
reconcile durations, watch restarts); `StateCollector` computes the per-object series (certificate expiry,
metadata freshness, token times, Ready/Stalled) from the operator's in-memory state on every scrape, so a
deleted object leaves no stale series; `MetricsServer` serves the registry on the `metricsEndpoint` setting.
Labels are bounded: kind, namespace, name and small enumerations; never an email, a URL or a token.
"""

from .operator import OperatorMetrics
from .state import OperatorState, StateCollector

# `MetricsServer` (metrics.server) is imported by the operator's start only: `keyplane render` builds a
# Runtime (and so an OperatorMetrics) and never serves it.
__all__ = ["OperatorMetrics", "OperatorState", "StateCollector"]

"""Prometheus metrics of the operator: a registry of its own, state computed at scrape time, served over HTTP.

`OperatorMetrics` holds the registry and the event counters (API requests, bundle writes, namespace
reconcile durations, watch restarts); `StateCollector` computes the per-object series (certificate expiry,
metadata freshness, token times, Ready/Stalled) from the operator's in-memory state on every scrape, so a
deleted object leaves no stale series; `MetricsServer` serves the registry on the `metricsEndpoint` setting.
Labels are bounded: kind, namespace, name and small enumerations; never an email, a URL or a token.
"""

from .operator import OperatorMetrics
from .server import MetricsServer
from .state import OperatorState, StateCollector

__all__ = ["MetricsServer", "OperatorMetrics", "OperatorState", "StateCollector"]

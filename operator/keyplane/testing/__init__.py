"""
An emulated Kubernetes API for Keyplane's tests and ``keyplane demo`` (needs ``kmock``).

* :class:`KeyplaneEmulator` — kmock's KubernetesEmulator with the API-server semantics Kopf needs.
* :func:`start_emulated_cluster` / :func:`emulated_cluster` — it on a real HTTP port, with a
  kubeconfig and kubectl-like async helpers (:class:`EmulatedCluster`).
* :func:`running_operator` — a Kopf operator in the background of a test, stopped in ~1 s.
* :class:`Authorizer` / :func:`render_chart_rbac` — token authentication and RBAC authorization
  against the chart's rendered roles (``keyplane.testing.rbac``).
"""
from keyplane.testing.cluster import (
    ApiError,
    EmulatedCluster,
    emulated_cluster,
    register_crd,
    register_kopf_peering,
    start_emulated_cluster,
    use_kubeconfig,
    wait_for,
)
from keyplane.testing.emulator import KeyplaneEmulator
from keyplane.testing.kopf_runner import running_operator
from keyplane.testing.rbac import Authorizer, ChartRBAC, ChartUnavailableError, render_chart_rbac

__all__ = [
    'ApiError',
    'Authorizer',
    'ChartRBAC',
    'ChartUnavailableError',
    'EmulatedCluster',
    'KeyplaneEmulator',
    'emulated_cluster',
    'register_crd',
    'register_kopf_peering',
    'render_chart_rbac',
    'running_operator',
    'start_emulated_cluster',
    'use_kubeconfig',
    'wait_for',
]

"""
An emulated Kubernetes API for Keyplane's tests and ``keyplane demo`` (needs ``kmock``).

* :class:`KeyplaneEmulator` — kmock's KubernetesEmulator with the API-server semantics Kopf needs.
* :func:`start_emulated_cluster` / :func:`emulated_cluster` — it on a real HTTP port, with a
  kubeconfig and kubectl-like async helpers (:class:`EmulatedCluster`).
* :func:`running_operator` — a Kopf operator in the background of a test, stopped in ~1 s.
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

__all__ = [
    'ApiError',
    'EmulatedCluster',
    'KeyplaneEmulator',
    'emulated_cluster',
    'register_crd',
    'register_kopf_peering',
    'running_operator',
    'start_emulated_cluster',
    'use_kubeconfig',
    'wait_for',
]

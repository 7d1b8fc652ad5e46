from collections.abc import AsyncIterator
from typing import Any

import pytest

from keyplane.testing import EmulatedCluster, emulated_cluster, use_kubeconfig

WIDGETS = 'example.dev/v1'
WIDGET_CRD: dict[str, Any] = {
    'apiVersion': 'apiextensions.k8s.io/v1',
    'kind': 'CustomResourceDefinition',
    'metadata': {'name': 'widgets.example.dev'},
    'spec': {
        'group': 'example.dev',
        'scope': 'Namespaced',
        'names': {'plural': 'widgets', 'singular': 'widget', 'kind': 'Widget',
                  'shortNames': ['wd'], 'categories': ['example']},
        'versions': [{
            'name': 'v1', 'served': True, 'storage': True,
            'subresources': {'status': {}},
            'schema': {'openAPIV3Schema': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}},
        }],
    },
}


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {'apiVersion': WIDGETS, 'kind': 'Widget', 'metadata': {'name': name}, 'spec': spec}


@pytest.fixture()
async def cluster() -> AsyncIterator[EmulatedCluster]:
    async with emulated_cluster([WIDGET_CRD]) as cluster:
        restore = use_kubeconfig(cluster.kubeconfig_path)
        try:
            yield cluster
        finally:
            restore()

"""A minimal Kopf operator running in-process against the emulated cluster over real HTTP."""
import asyncio
import collections
import time
from collections.abc import AsyncIterator
from typing import Any

import kopf
import kubernetes
import pytest

from keyplane.testing import EmulatedCluster, register_kopf_peering, running_operator, wait_for

from .conftest import WIDGETS, widget

FINALIZER = 'example.dev/finalizer'


class Calls(collections.Counter[str]):
    pass


def make_registry(calls: Calls) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.create('example.dev', 'v1', 'widgets', registry=registry)
    def create_widget(body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch, **_: Any) -> None:
        calls['create'] += 1
        secret: Any = {'metadata': {'name': f'{name}-secret'}, 'stringData': {'k': 'v'}}
        kopf.adopt(secret, owner=body)
        kubernetes.client.CoreV1Api().create_namespaced_secret(namespace or 'default', secret)
        patch.status['phase'] = 'Created'

    @kopf.on.delete('example.dev', 'v1', 'widgets', registry=registry)
    def delete_widget(**_: Any) -> None:
        calls['delete'] += 1

    # Async: it stops at once on deletion. A sync timer runs in a thread, so Kopf would poll for
    # its exit every settings.background.cancellation_polling (60 s) before releasing the finalizer.
    @kopf.timer('example.dev', 'v1', 'widgets', interval=0.05, registry=registry)
    async def tick(**_: Any) -> None:
        calls['tick'] += 1

    return registry


def make_settings(*, initial_streaming: bool = False) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.watching.initial_streaming = initial_streaming
    settings.posting.enabled = False
    return settings


@pytest.fixture(scope='module', autouse=True)
def warm_kubernetes_client() -> None:
    # The first kubernetes.client.CoreV1Api() costs ~2 s (once per process): not in the handlers' timing.
    kubernetes.client.CoreV1Api()


@pytest.fixture()
async def calls(cluster: EmulatedCluster) -> AsyncIterator[Calls]:
    calls = Calls()
    async with running_operator(registry=make_registry(calls), settings=make_settings()):
        yield calls


async def widget_phase(cluster: EmulatedCluster, name: str = 'w1') -> str | None:
    body = await cluster.get(WIDGETS, 'Widget', 'default', name)
    return None if body is None else body.get('status', {}).get('phase')


async def test_create_handler_runs_once_and_patches_status(cluster: EmulatedCluster, calls: Calls) -> None:
    await cluster.apply(widget('w1', size=1))
    await wait_for(lambda: widget_phase(cluster))
    await asyncio.sleep(0.2)  # the watch-resume problem would show up as a 2nd call and a 409
    assert calls['create'] == 1
    assert f'PATCH /apis/{WIDGETS}/namespaces/default/widgets/w1/status' in cluster.writes_since_mark()
    body = await cluster.get(WIDGETS, 'Widget', 'default', 'w1')
    assert body is not None
    assert body['metadata']['generation'] == 1  # status and annotations do not bump it
    assert body['metadata']['finalizers'] == [FINALIZER]
    assert 'kopf' not in str(body.get('status'))  # Kopf's bookkeeping is in annotations
    secret = await cluster.get('v1', 'Secret', 'default', 'w1-secret')
    assert secret is not None
    assert secret['metadata']['ownerReferences'][0]['uid'] == body['metadata']['uid']

    # A spec change bumps the generation (and nothing re-runs the create handler).
    body = await cluster.patch(WIDGETS, 'Widget', 'default', 'w1', {'spec': {'size': 2}})
    assert body['metadata']['generation'] == 2
    await asyncio.sleep(0.1)
    assert calls['create'] == 1


async def test_deletion_runs_the_delete_handler_and_releases_the_finalizer(
        cluster: EmulatedCluster, calls: Calls) -> None:
    await cluster.apply(widget('w1'))
    await wait_for(lambda: widget_phase(cluster))
    await cluster.delete(WIDGETS, 'Widget', 'default', 'w1')
    await wait_for(lambda: calls['delete'] == 1)

    async def gone() -> bool:
        return await cluster.get(WIDGETS, 'Widget', 'default', 'w1') is None
    await wait_for(gone)
    assert await cluster.get('v1', 'Secret', 'default', 'w1-secret') is None  # garbage-collected


async def test_steady_state_makes_no_writes(cluster: EmulatedCluster, calls: Calls) -> None:
    await cluster.apply(widget('w1'))
    await wait_for(lambda: widget_phase(cluster))
    await asyncio.sleep(0.1)  # let Kopf finish its own bookkeeping patches
    cluster.mark()
    ticks = calls['tick']
    await asyncio.sleep(0.3)
    assert calls['tick'] > ticks  # the timer keeps running...
    assert cluster.modifying_requests() == 0, cluster.writes_since_mark()  # ...and writes nothing


async def test_initial_streaming_mode(cluster: EmulatedCluster) -> None:
    await cluster.apply(widget('before'))
    calls = Calls()
    settings = make_settings(initial_streaming=True)
    async with running_operator(registry=make_registry(calls), settings=settings):
        await wait_for(lambda: widget_phase(cluster, 'before'))
        await cluster.apply(widget('after'))
        await wait_for(lambda: widget_phase(cluster, 'after'))
        await asyncio.sleep(0.1)
    assert calls['create'] == 2


async def test_operator_restart_does_not_repeat_handlers(cluster: EmulatedCluster) -> None:
    calls = Calls()
    async with running_operator(registry=make_registry(calls), settings=make_settings()):
        await cluster.apply(widget('w1'))
        await wait_for(lambda: widget_phase(cluster))
    async with running_operator(registry=make_registry(calls), settings=make_settings(),
                                namespaces=['default']):
        await asyncio.sleep(0.2)
    assert calls['create'] == 1


async def test_operator_stops_in_about_a_second(cluster: EmulatedCluster) -> None:
    calls = Calls()
    async with running_operator(registry=make_registry(calls), settings=make_settings()):
        await cluster.apply(widget('w1'))
        await wait_for(lambda: widget_phase(cluster))
        started = time.monotonic()
    # Usually ~20 ms; Kopf sometimes leaves a timer behind (its own race), which is cancelled after 1 s.
    assert time.monotonic() - started < 1.5


async def test_peering(cluster: EmulatedCluster) -> None:
    register_kopf_peering(cluster.emulator)
    await cluster.create({'apiVersion': 'kopf.dev/v1', 'kind': 'ClusterKopfPeering',
                          'metadata': {'name': 'p'}})
    calls = Calls()
    async with running_operator(registry=make_registry(calls), settings=make_settings(), peering_name='p'):
        await cluster.apply(widget('w1'))
        await wait_for(lambda: widget_phase(cluster))

        async def peers() -> object:
            peering = await cluster.get('kopf.dev/v1', 'ClusterKopfPeering', None, 'p')
            return peering and peering.get('status')
        assert await wait_for(peers)
    assert calls['create'] == 1

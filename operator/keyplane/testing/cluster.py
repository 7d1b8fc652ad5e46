"""
An emulated Kubernetes cluster on a real HTTP port, with kubectl-like async helpers.

Usage::

    async with emulated_cluster(crds) as cluster:
        restore = use_kubeconfig(cluster.kubeconfig_path)
        await cluster.apply({'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'x'}})
        cm = await cluster.get('v1', 'ConfigMap', 'default', 'x')
        restore()

The helpers talk HTTP to ``cluster.url`` (like kubectl), never to the emulator's objects, with the
admin token. Every request needs a bearer token (401 without). With ``rbac`` (the chart's RBAC, see
:func:`keyplane.testing.rbac.render_chart_rbac`), ``cluster.kubeconfig_path`` carries a token of the
chart's ServiceAccount and the operator is authorized against the chart's rules (403 otherwise);
``cluster.admin_kubeconfig_path`` is the admin's, for setup as a user would do it.
"""
from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime
import inspect
import os
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import httpx
import kmock
import yaml

from keyplane.testing.emulator import KeyplaneEmulator
from keyplane.testing.rbac import ADMIN_USER, Authorizer, ChartRBAC

__all__ = ['ApiError', 'EmulatedCluster', 'emulated_cluster', 'register_crd', 'register_kopf_peering',
           'start_emulated_cluster', 'use_kubeconfig', 'wait_for']

CRDS = kmock.resource('apiextensions.k8s.io', 'v1', 'customresourcedefinitions')
_WRITE_METHODS = ('POST', 'PUT', 'PATCH', 'DELETE')
_ALL_VERBS = {'create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'}


class ApiError(Exception):
    """An HTTP error from the emulated API server (``status`` and the ``Status`` body)."""

    def __init__(self, status: int, body: Any, request: str) -> None:
        message = body.get('message') if isinstance(body, Mapping) else body
        super().__init__(f'{request} -> {status}: {message}')
        self.status = status
        self.body = body


def register_crd(emu: KeyplaneEmulator, crd: Mapping[str, Any]) -> None:
    """
    Serve an apiextensions.k8s.io/v1 CustomResourceDefinition manifest.

    Every served version becomes a discoverable kmock ``ResourceInfo`` (names, scope, short names,
    categories, subresources); the CRD object itself is stored (Established), as a real cluster would.
    """
    spec = crd['spec']
    names = spec['names']
    for version in spec['versions']:
        if not version.get('served', True):
            continue
        emu.resources[kmock.resource(spec['group'], version['name'], names['plural'])] = kmock.ResourceInfo(
            kind=names['kind'],
            singular=names.get('singular') or names['kind'].lower(),
            namespaced=spec.get('scope', 'Namespaced') == 'Namespaced',
            shortnames=names.get('shortNames') or (),
            categories=names.get('categories') or (),
            subresources=(version.get('subresources') or {}).keys(),
            verbs=_ALL_VERBS,
        )
    body = {k: v for k, v in crd.items() if k != 'status'}
    body['metadata'] = dict(crd.get('metadata') or {}, name=f"{names['plural']}.{spec['group']}")
    now = datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')
    body['status'] = {
        'acceptedNames': dict(names),
        'storedVersions': [v['name'] for v in spec['versions'] if v.get('storage', True)],
        'conditions': [{'type': cond, 'status': 'True', 'reason': reason, 'lastTransitionTime': now}
                       for cond, reason in [('NamesAccepted', 'NoConflicts'),
                                            ('Established', 'InitialNamesAccepted')]],
    }
    key = (CRDS, None, body['metadata']['name'])
    if key not in emu.objects or emu.objects[key].deleted:  # re-registering only updates discovery
        emu.create_object(CRDS, body)


def register_kopf_peering(emu: KeyplaneEmulator) -> None:
    """Serve Kopf's peering resources (kopf.dev/v1), for ``running_operator(peering_name=...)``."""
    for plural, kind, namespaced in [('kopfpeerings', 'KopfPeering', True),
                                     ('clusterkopfpeerings', 'ClusterKopfPeering', False)]:
        emu.resources[kmock.resource('kopf.dev', 'v1', plural)] = kmock.ResourceInfo(
            kind=kind, singular=kind.lower(), namespaced=namespaced, verbs=_ALL_VERBS)


def use_kubeconfig(path: str | os.PathLike[str]) -> Callable[[], None]:
    """
    Point ``$KUBECONFIG`` and the kubernetes client's default location at ``path``.

    ``kubernetes.config`` reads ``$KUBECONFIG`` once, at import; Kopf's default login handler
    (``login_via_client``) uses that default. Returns a function that restores both.
    """
    old_env = os.environ.get('KUBECONFIG')
    os.environ['KUBECONFIG'] = os.fspath(path)
    kube_config: Any = None
    with contextlib.suppress(ImportError):
        import kubernetes.config.kube_config as kube_config
    old_default = getattr(kube_config, 'KUBE_CONFIG_DEFAULT_LOCATION', None)
    if kube_config is not None:
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = os.fspath(path)

    def restore() -> None:
        if old_env is None:
            os.environ.pop('KUBECONFIG', None)
        else:
            os.environ['KUBECONFIG'] = old_env
        if kube_config is not None:
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = old_default
    return restore


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """
    Poll ``predicate`` (sync or async) until it returns a truthy value, and return that value.

    An ``AssertionError`` raised by the predicate counts as "not yet". On timeout, raise
    ``AssertionError`` showing the last value (or assertion) seen.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
        except AssertionError as e:
            value, ok = e, False
        else:
            ok = bool(value)
        if ok:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f'Not satisfied within {timeout}s; the last value seen: {value!r}')
        await asyncio.sleep(interval)


class EmulatedCluster:
    """A running :class:`KeyplaneEmulator` on a real HTTP port, with kubectl-like helpers."""

    def __init__(self, emulator: KeyplaneEmulator, server: kmock.Server, tmpdir: str) -> None:
        assert emulator.authorizer is not None
        self.emulator = emulator
        self.authorizer: Authorizer = emulator.authorizer
        self.url = str(server.url).rstrip('/')
        self.admin_kubeconfig_path = os.path.join(tmpdir, 'kubeconfig-admin')
        #: the operator's kubeconfig: the chart's ServiceAccount after :meth:`use_rbac`, else the admin's
        self.kubeconfig_path = self.admin_kubeconfig_path
        #: the RBAC the operator's token is authorized against (None: the operator runs as admin)
        self.rbac: ChartRBAC | None = None
        self.operator_token = self.authorizer.admin_token
        self._server = server
        self._tmpdir = tmpdir
        self._client = httpx.AsyncClient(base_url=self.url, timeout=10.0,
                                         headers={'Authorization': f'Bearer {self.authorizer.admin_token}'})
        self._discovery: dict[str, builtins.list[dict[str, Any]]] = {}
        self._mark = 0
        self._write_kubeconfig(self.admin_kubeconfig_path, ADMIN_USER, self.authorizer.admin_token)

    @property
    def admin_headers(self) -> dict[str, str]:
        """The ``Authorization`` header of the admin, for raw HTTP clients of the emulator."""
        return {'Authorization': f'Bearer {self.authorizer.admin_token}'}

    def _write_kubeconfig(self, path: str, user: str, token: str) -> None:
        config = {
            'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'keyplane-emulator',
            'clusters': [{'name': 'keyplane-emulator', 'cluster': {'server': self.url}}],
            'users': [{'name': user, 'user': {'token': token}}],
            'contexts': [{'name': 'keyplane-emulator', 'context': {
                'cluster': 'keyplane-emulator', 'user': user, 'namespace': 'default'}}],
        }
        with open(path, 'w', encoding='utf-8') as f:
            yaml.safe_dump(config, f)

    async def use_rbac(self, rbac: ChartRBAC) -> None:
        """
        Authorize the operator against ``rbac`` from now on: load its roles and bindings, create its
        ServiceAccount (and namespace), and point :attr:`kubeconfig_path` at a token of that account.
        Calling it again with other chart values swaps the rules (the token stays while the account does).
        """
        self.authorizer.load(rbac.objects)
        if self.rbac is None or self.rbac.user != rbac.user:
            if await self.get('v1', 'Namespace', None, rbac.namespace) is None:
                await self.create({'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': rbac.namespace}})
            account = next(obj for obj in rbac.objects if obj['kind'] == 'ServiceAccount')
            await self.apply(account)
            self.operator_token = self.authorizer.issue_token(rbac.user)
            self.kubeconfig_path = os.path.join(self._tmpdir, 'kubeconfig')
            self._write_kubeconfig(self.kubeconfig_path, rbac.user.name, self.operator_token)
        self.rbac = rbac

    async def stop(self) -> None:
        """End the watch streams, stop the HTTP server, remove the kubeconfig."""
        self.emulator.close_watches()
        await self._client.aclose()
        # aiohttp waits up to 60 s for open requests: a watch stream of an operator that was cancelled
        # (not stopped) may still hold one. Nothing in a test needs those answered any more.
        runner = getattr(self._server.server, 'runner', None)
        if runner is not None:
            runner._shutdown_timeout = 0.5
        await self._server.__aexit__(None, None, None)
        await self.emulator.__aexit__(None, None, None)
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    async def __aenter__(self) -> EmulatedCluster:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- request accounting ---------------------------------------------------------------------------

    def mark(self) -> None:
        """Start counting requests from now."""
        self._mark = len(builtins.list(self.emulator))

    def requests_since_mark(self) -> builtins.list[kmock.Request]:
        """All API requests the emulator received since :meth:`mark`."""
        return builtins.list(self.emulator)[self._mark:]

    def writes_since_mark(self, *, ignore_events: bool = False) -> builtins.list[str]:
        """``"PATCH /apis/..."`` for every POST/PUT/PATCH/DELETE since :meth:`mark` (for messages)."""
        return [f'{request.method.value} {request.url.path}' for request in self.requests_since_mark()
                if request.method.value in _WRITE_METHODS
                and not (ignore_events and request.resource is not None
                         and request.resource.plural == 'events')]

    def modifying_requests(self, *, ignore_events: bool = False) -> int:
        """How many POST/PUT/PATCH/DELETE requests arrived since :meth:`mark`."""
        return len(self.writes_since_mark(ignore_events=ignore_events))

    # -- kubectl-like helpers -------------------------------------------------------------------------

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """POST the object (namespace from its metadata, ``default`` if absent)."""
        meta = obj.get('metadata') or {}
        path = await self._path(obj['apiVersion'], obj['kind'], meta.get('namespace') or 'default')
        result: dict[str, Any] = await self._request('POST', path, json=obj)
        return result

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create the object, or merge-patch it with ``obj`` if it exists."""
        try:
            return await self.create(obj)
        except ApiError as e:
            if e.status != 409:
                raise
        meta = obj['metadata']
        return await self.patch(obj['apiVersion'], obj['kind'], meta.get('namespace') or 'default',
                                meta['name'], obj)

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str,
                  ) -> dict[str, Any] | None:
        """The object, or None if absent. ``kind`` is a kind, plural, singular or short name."""
        path = await self._path(api_version, kind, namespace, name)
        try:
            result: dict[str, Any] = await self._request('GET', path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        return result

    async def list(self, api_version: str, kind: str, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None,
                   ) -> builtins.list[dict[str, Any]]:
        """The objects in ``namespace`` (all namespaces if None), optionally filtered by selectors."""
        selectors = [('labelSelector', label_selector), ('fieldSelector', field_selector)]
        params = {key: value for key, value in selectors if value}
        result = await self._request('GET', await self._path(api_version, kind, namespace), params=params)
        items: builtins.list[dict[str, Any]] = result['items']
        return items

    async def patch(self, api_version: str, kind: str, namespace: str | None, name: str,
                    patch: Mapping[str, Any] | builtins.list[Any], *, subresource: str | None = None,
                    ) -> dict[str, Any]:
        """Merge-patch (a dict) or JSON-patch (a list) the object or its subresource (``status``)."""
        path = await self._path(api_version, kind, namespace, name, subresource)
        content_type = 'application/json-patch+json' if isinstance(patch, builtins.list) \
            else 'application/merge-patch+json'
        result: dict[str, Any] = await self._request('PATCH', path, json=patch, content_type=content_type)
        return result

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str,
                     ) -> dict[str, Any] | None:
        """Delete the object: (the object if finalizers hold it, else a Status); None if absent."""
        path = await self._path(api_version, kind, namespace, name)
        try:
            result: dict[str, Any] = await self._request('DELETE', path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        return result

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
                       ) -> Any:
        """See :func:`wait_for`."""
        return await wait_for(predicate, timeout=timeout, interval=interval)

    # -- internals ------------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, *, json: Any = None,
                       params: Mapping[str, str] | None = None, content_type: str | None = None) -> Any:
        headers = {'Content-Type': content_type} if content_type else {}
        response = await self._client.request(method, path, json=json, params=params, headers=headers)
        body = response.json() if response.content else None
        if response.status_code >= 400:
            raise ApiError(response.status_code, body, f'{method} {path}')
        return body

    async def _resource(self, api_version: str, kind: str) -> dict[str, Any]:
        """Discover the resource (as kubectl does) by its kind, plural, singular or short name."""
        for refresh in (False, True):
            if refresh or api_version not in self._discovery:
                prefix = '/api' if '/' not in api_version else '/apis'
                try:
                    found = await self._request('GET', f'{prefix}/{api_version}')
                except ApiError as e:
                    if e.status != 404:
                        raise
                    found = {'resources': []}
                self._discovery[api_version] = [r for r in found['resources'] if '/' not in r['name']]
            for resource in self._discovery[api_version]:
                names = {resource['name'], resource.get('singularName'), *(resource.get('shortNames') or ())}
                if kind in names or kind == resource.get('kind'):
                    return resource
        raise LookupError(f'No resource {kind!r} is served in {api_version!r}')

    async def _path(self, api_version: str, kind: str, namespace: str | None,
                    name: str | None = None, subresource: str | None = None) -> str:
        resource = await self._resource(api_version, kind)
        path = '/api/v1' if api_version == 'v1' else f'/apis/{api_version}'
        if resource.get('namespaced') and namespace is not None:
            path += f'/namespaces/{namespace}'
        path += f"/{resource['name']}"
        if name is not None:
            path += f'/{name}'
        if subresource is not None:
            path += f'/{subresource}'
        return path


async def start_emulated_cluster(crds: Iterable[Mapping[str, Any]] = (), *, host: str = '127.0.0.1',
                                 rbac: ChartRBAC | None = None) -> EmulatedCluster:
    """
    Start a :class:`KeyplaneEmulator` on a free port of ``host``, serving the bundled core
    resources and ``crds``, with a kubeconfig pointing at it. Call ``stop()`` when done.
    With ``rbac``, that kubeconfig is a token of the chart's ServiceAccount (see :meth:`EmulatedCluster.use_rbac`).
    """
    emu = KeyplaneEmulator(authorizer=Authorizer())
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        emu.resources.load_bundled()
    for crd in crds:
        register_crd(emu, crd)
    await emu.__aenter__()
    server = kmock.Server(emu, host=host)
    try:
        await server.__aenter__()
    except BaseException:
        await emu.__aexit__(None, None, None)
        raise
    cluster = EmulatedCluster(emu, server, tempfile.mkdtemp(prefix='keyplane-emulator-'))
    if rbac is not None:
        try:
            await cluster.use_rbac(rbac)
        except BaseException:
            await cluster.stop()
            raise
    return cluster


@contextlib.asynccontextmanager
async def emulated_cluster(crds: Iterable[Mapping[str, Any]] = (), *, host: str = '127.0.0.1',
                           rbac: ChartRBAC | None = None) -> AsyncIterator[EmulatedCluster]:
    """:func:`start_emulated_cluster` as an async context manager."""
    cluster = await start_emulated_cluster(crds, host=host, rbac=rbac)
    try:
        yield cluster
    finally:
        await cluster.stop()

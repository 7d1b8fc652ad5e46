"""
An in-memory Kubernetes API server for Keyplane's tests and ``keyplane demo``.

:class:`KeyplaneEmulator` is a small subclass of kmock's ``KubernetesEmulator``
that adds the API-server semantics Kopf 1.45 relies on and plain kmock 0.8 lacks
(see ``shared/notes/kopf-on-kmock.md``):

* system metadata: ``uid``, ``creationTimestamp``, ``apiVersion``/``kind``,
  a global ``resourceVersion`` counter bumped on every write, ``generation``
  bumped only when anything but ``metadata``/``status`` changes;
  ``generateName``; a no-op patch writes nothing (no new version, no event);
* the ``status`` subresource: ``/status`` writes change only ``status``,
  main-resource writes (and creations) ignore ``status``;
* optimistic concurrency: a stale ``metadata.resourceVersion`` in a merge patch
  or a replacement answers 409; a failed JSON-patch (e.g. its ``test`` op) 422;
* deletion: finalizers block it with ``deletionTimestamp`` (generation bumped);
  removing the last finalizer deletes the object (DELETED event); owned objects
  whose owners are all gone are deleted too (a synchronous garbage collector);
* an event log per resource: lists carry the collection ``resourceVersion``;
  a watch from ``resourceVersion=N`` replays only newer events, then streams live;
  a watch without it (or with ``sendInitialEvents=true``) sends ADDED for every
  existing object first; ``sendInitialEvents`` ends them with a BOOKMARK
  annotated ``k8s.io/initial-events-end``; a too old version gets 410 Gone;
* ``labelSelector`` (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``)
  and simple ``fieldSelector`` (``metadata.name=…``) on lists and watches,
  with the synthetic ADDED/DELETED events a real server sends when an object
  starts or stops matching; ``timeoutSeconds`` on watches;
* PUT (replace) on objects; a ``default`` namespace (and ``kube-system``);
* a Secret whose data is over 1 MiB (``MaxSecretSize``, all keys together) answers 422, with the
  message a kube-apiserver gives; request bodies are read up to the API server's 3 MiB;
* with an ``authorizer`` (:class:`keyplane.testing.rbac.Authorizer`): bearer-token authentication
  (401 without a valid token) and RBAC authorization of every request (403), and TokenRequest
  (``POST .../serviceaccounts/<name>/token``) issuing tokens of existing ServiceAccounts
  (the tokens do not expire).

Writes must go through the HTTP API (or :meth:`KeyplaneEmulator.create_object`):
objects put into ``emu.objects[...]`` directly get no metadata and emit no events.
"""
from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import copy
import datetime
import random
import re
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import kmock._internal.parsing as kmock_parsing

from keyplane.mergepatch import apply_merge_patch
from keyplane.testing.rbac import Authorizer, RequestAttributes, service_account_user

__all__ = ['KeyplaneEmulator', 'requests_intercepted']

Body = dict[str, Any]
Key = tuple[kmock.resource, str | None, str]
Matcher = Callable[[Mapping[str, Any]], bool]

NAMESPACES = kmock.resource('', 'v1', 'namespaces')
SERVICE_ACCOUNTS = kmock.resource('', 'v1', 'serviceaccounts')
_TOKEN_SECONDS = 3600
# Metadata that only the server sets; clients' attempts to change it are ignored.
_SYSTEM_METADATA = ('name', 'namespace', 'uid', 'creationTimestamp', 'resourceVersion', 'generation',
                    'deletionTimestamp', 'deletionGracePeriodSeconds')
_NAME_CHARS = 'bcdfghjklmnpqrstvwxz2456789'  # as in the real API server's generateName


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def _error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details or {})


# k8s.io/apiserver: the default of kube-apiserver's --max-request-body-bytes.
MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024
# k8s.io/kubernetes/pkg/apis/core: MaxSecretSize, the sum of a Secret's decoded data values.
MAX_SECRET_SIZE = 1024 * 1024


def _check_secret_size(res: kmock.resource, name: str, body: Mapping[str, Any]) -> None:
    if res.group or res.plural != 'secrets':
        return
    size = sum(len(base64.b64decode(value)) for value in (body.get('data') or {}).values() if isinstance(value, str))
    size += sum(len(value.encode()) for value in (body.get('stringData') or {}).values() if isinstance(value, str))
    if size > MAX_SECRET_SIZE:
        message = f'Too long: must have at most {MAX_SECRET_SIZE} bytes'
        raise _error(422, 'Invalid', f'Secret "{name}" is invalid: data: {message}', name=name, kind='Secret',
                     causes=[{'reason': 'FieldValueTooLong', 'message': message, 'field': 'data'}])


def _spec_part(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: val for key, val in body.items() if key not in ('metadata', 'status', 'apiVersion', 'kind')}


def _split_requirements(selector: str) -> list[str]:
    return [part.strip() for part in re.split(r',(?![^(]*\))', selector) if part.strip()]


def parse_label_selector(selector: str) -> Matcher:
    """Parse a Kubernetes label selector into a predicate over a labels dict."""
    checks: list[tuple[str, frozenset[str] | None, bool]] = []  # key, values (None: existence), wanted
    for req in _split_requirements(selector):
        if m := re.fullmatch(r'([\w./-]+)\s+(in|notin)\s*\(([^)]*)\)', req):
            checks.append((m[1], frozenset(v.strip() for v in m[3].split(',') if v.strip()), m[2] == 'in'))
        elif m := re.fullmatch(r'([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)', req):
            checks.append((m[1], frozenset([m[3]]), m[2] != '!='))
        elif m := re.fullmatch(r'(!?)\s*([\w./-]+)', req):
            checks.append((m[2], None, not m[1]))
        else:
            raise _error(400, 'BadRequest', f'unable to parse requirement: {req!r}')

    def match(labels: Mapping[str, Any]) -> bool:
        return all((key in labels if values is None else labels.get(key) in values) == wanted
                   for key, values, wanted in checks)
    return match


def parse_field_selector(selector: str) -> Matcher:
    """Parse a field selector (``a.b=c``, ``a.b==c``, ``a.b!=c``) into a predicate over a body."""
    checks: list[Matcher] = []
    for req in _split_requirements(selector):
        m = re.fullmatch(r'([\w.-]+)\s*(==|=|!=)\s*(.*)', req)
        if m is None:
            raise _error(400, 'BadRequest', f'invalid field selector: {req!r}')

        def check(body: Mapping[str, Any], path: str = m[1], op: str = m[2], value: str = m[3]) -> bool:
            current: Any = body
            for part in path.split('.'):
                current = current.get(part) if isinstance(current, Mapping) else None
            actual = '' if current is None else str(current)
            actual = actual.lower() if isinstance(current, bool) else actual
            return (actual == value) != (op == '!=')
        checks.append(check)
    return lambda body: all(check(body) for check in checks)


def _parse_path(path: str) -> Any:
    """kmock 0.8 cannot parse Namespace URLs (``/api/v1/namespaces[/name[/status]]``): it takes
    ``namespaces`` for the namespace prefix of another resource and fails (500). Parse them here."""
    parts = path.strip('/').split('/')
    if parts[:3] == ['api', 'v1', 'namespaces'] and (
            len(parts) <= 4 or (len(parts) == 5 and parts[4] in ('status', 'finalize'))):
        return kmock_parsing.ParsedPath(group='', version='v1', plural='namespaces',
                                        name=parts[3] if len(parts) > 3 else None,
                                        subresource=parts[4] if len(parts) > 4 else None)
    return _kmock_parse_path(path)


if getattr(kmock_parsing.parse_path, '__module__', None) != __name__:  # once, even if reloaded
    _kmock_parse_path = kmock_parsing.parse_path
    kmock_parsing.parse_path = _parse_path


@attrs.define
class _EventLog:
    """All write events of one resource, in ``resourceVersion`` order."""
    events: list[tuple[int, str, Body, Body | None]] = attrs.field(factory=list)  # rv, type, new, old
    floor: int = 0  # events up to this version were dropped: older watches get 410 Gone
    wakeup: asyncio.Event = attrs.field(factory=asyncio.Event)


@attrs.define(kw_only=True)
class KeyplaneEmulator(kmock.KubernetesEmulator):
    """kmock's ``KubernetesEmulator`` with the API-server semantics Kopf needs (see the module doc)."""

    event_log_limit: int = 10_000  # per resource; a watch from before the retained events gets 410 Gone
    garbage_collection: bool = True  # delete dependents once all their ownerReferences are gone
    authorizer: Authorizer | None = None  # None: every request is served, with or without credentials

    _rv: int = attrs.field(default=0, init=False)
    _logs: dict[kmock.resource, _EventLog] = attrs.field(factory=dict, init=False)
    _results: weakref.WeakKeyDictionary[kmock.Request, Any] = attrs.field(
        factory=weakref.WeakKeyDictionary, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.fallback[kmock.method.PUT] << self._serve_replace
        if NAMESPACES not in self.resources:
            self.resources[NAMESPACES] = kmock.ResourceInfo(
                kind='Namespace', singular='namespace', namespaced=False, subresources={'status'},
                verbs={'create', 'delete', 'get', 'list', 'patch', 'update', 'watch'})
        for name in ('default', 'kube-system'):
            self.create_object(NAMESPACES, {'metadata': {'name': name}, 'status': {'phase': 'Active'}})

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # A kube-apiserver reads request bodies up to 3 MiB (maxRequestBodyBytes); aiohttp's default of
        # 1 MiB would answer 413 to a Secret the API server accepts or refuses with its own 422.
        return await super().__call__(raw_request.clone(client_max_size=MAX_REQUEST_BODY_BYTES))

    # -- public helpers -------------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The latest resourceVersion issued (of any object)."""
        return str(self._rv)

    def create_object(self, resource: kmock.resource | str, body: Mapping[str, Any]) -> Body:
        """Create an object as a controller would (status is kept), with metadata and an ADDED event."""
        res = kmock.resource(resource)
        meta = body.get('metadata') or {}
        return self._create(res, self._namespace_for(res, meta.get('namespace')), body, keep_status=True)

    def close_watches(self) -> None:
        """End all watch streams now and refuse new ones (before the HTTP server stops)."""
        self._closed = True
        for log in self._logs.values():
            log.wakeup.set()

    # -- request routing ----------------------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if self.authorizer is not None:  # 401/403 before anything else, as a real API server
            try:
                _, attributes = self.authorizer.check(request.method.value, request.url.path, request.params,
                                                      request.headers)
            except kmock.KubernetesError as e:  # a Status as the real one (no kmock traceback in details)
                status: Body = {'apiVersion': 'v1', 'kind': 'Status', 'metadata': {}, 'status': 'Failure',
                          'message': e.message, 'reason': e.reason, 'code': e.status}
                return aiohttp.web.json_response({**status, **({'details': e.details} if e.details else {})},
                                                 status=e.status)
            if (attributes.verb, attributes.resource, attributes.subresource) == ('create', 'serviceaccounts',
                                                                                  'token'):
                return self._token_request(attributes, request.data)
        return await self._handle_authorized(request)

    async def _handle_authorized(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # The python kubernetes client sends watch=True, kmock only recognises watch=true.
        if (request.method == kmock.method.GET and request.action != kmock.action.WATCH
                and request.params.get('watch', '').lower() in ('true', '1')):
            request = attrs.evolve(request, action=kmock.action.WATCH)

        # Change the state before the user's reactions and the fallbacks render the response
        # (skipping kmock's own state-keeping in KubernetesEmulator._handle).
        res = request.resource
        if res is not None and request.subresource in (None, 'status'):
            if request.action == kmock.action.CREATE and request.subresource is None:
                self._require_known(res)
                data = self._require_body(request)
                namespace = self._namespace_for(res, request.namespace or data['metadata'].get('namespace'))
                created = self._create(res, namespace, data)
                self._results[request] = kmock.Response(status=201, payload=created)
            elif request.action == kmock.action.UPDATE and request.name is not None:
                self._results[request] = self._patch(request)
            elif request.method == kmock.method.PUT and request.name is not None:
                self._results[request] = self._replace(request)
            elif request.action == kmock.action.DELETE and request.name is not None:
                self._results[request] = self._delete(self._key(request), request.data)
        return await kmock.KubernetesScaffold._handle(self, request)

    def _token_request(self, attributes: RequestAttributes, data: Any) -> aiohttp.web.StreamResponse:
        """TokenRequest: a new bearer token of an existing ServiceAccount."""
        assert self.authorizer is not None
        self._require((SERVICE_ACCOUNTS, attributes.namespace, attributes.name))
        spec = dict((data or {}).get('spec') or {}) if isinstance(data, Mapping) else {}
        seconds = int(spec.get('expirationSeconds') or _TOKEN_SECONDS)
        token = self.authorizer.issue_token(service_account_user(attributes.namespace, attributes.name))
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
        return aiohttp.web.json_response(status=201, data={
            'apiVersion': 'authentication.k8s.io/v1', 'kind': 'TokenRequest',
            'metadata': {'name': attributes.name, 'namespace': attributes.namespace, 'creationTimestamp': _now()},
            'spec': {'audiences': spec.get('audiences') or ['https://kubernetes.default.svc'],
                     'expirationSeconds': seconds, 'boundObjectRef': spec.get('boundObjectRef')},
            'status': {'token': token, 'expirationTimestamp': expires.strftime('%Y-%m-%dT%H:%M:%SZ')},
        })

    async def _serve_create(self, request: kmock.Request) -> Any:
        return self._results.pop(request)

    async def _serve_update(self, request: kmock.Request) -> Any:
        return self._results.pop(request)

    async def _serve_delete(self, request: kmock.Request) -> Any:
        return self._results.pop(request)

    async def _serve_replace(self, request: kmock.Request) -> Any:
        if request not in self._results:
            raise kmock.KubernetesEndpointNotFoundError()
        return self._results.pop(request)

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        self._require_known(request.resource)
        return self._require(self._key(request))

    async def _serve_list(self, request: kmock.Request) -> Any:
        res = self._require_known(request.resource)
        match = self._matcher(request)
        kind = self._kind(res, {})
        return {
            'apiVersion': self._api_version(res),
            'kind': f'{kind}List',
            'metadata': {'resourceVersion': str(self._rv)},
            'items': [body for key, body in self._alive() if key[0] == res and match(body)],
        }

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        res = self._require_known(request.resource)
        match = self._matcher(request)  # raises 400 before streaming starts
        params = request.params
        since = params.get('resourceVersion', '')
        initial = params.get('sendInitialEvents') == 'true'
        timeout = float(params['timeoutSeconds']) if params.get('timeoutSeconds') else None
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        log = self._log(res)
        yield b''  # send the headers now

        # The snapshot and the cursor are taken without awaiting: no event can fall between them.
        if initial or since in ('', '0'):
            cursor = self._rv
            events: list[Body] = [{'type': 'ADDED', 'object': body}
                                  for key, body in self._alive() if key[0] == res and match(body)]
            if initial:
                events.append({'type': 'BOOKMARK', 'object': {
                    'apiVersion': self._api_version(res), 'kind': self._kind(res, {}),
                    'metadata': {'resourceVersion': str(cursor),
                                 'annotations': {'k8s.io/initial-events-end': 'true'}}}})
        else:
            try:
                cursor = int(since)
            except ValueError:
                cursor = -1
            if cursor < log.floor:
                yield {'type': 'ERROR', 'object': {
                    'apiVersion': 'v1', 'kind': 'Status', 'metadata': {}, 'status': 'Failure', 'code': 410,
                    'reason': 'Expired', 'message': f'too old resource version: {since} ({log.floor})'}}
                return
            events = []

        raw_request = request._raw_request
        while True:
            for event in events:
                yield event
            if self._closed:
                return
            wakeup = log.wakeup
            start = bisect.bisect_right(log.events, cursor, key=lambda item: item[0])
            events = []
            for rv, etype, new, old in log.events[start:]:
                cursor = rv
                if (translated := self._translate(etype, new, old, match)) is not None:
                    events.append(translated)
            if events:
                continue
            while not wakeup.is_set():
                remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if remaining is not None and remaining <= 0:
                    return
                try:  # wake up now and then to notice disconnected clients
                    await asyncio.wait_for(wakeup.wait(), timeout=min(remaining or 1.0, 1.0))
                except TimeoutError:
                    transport = None if raw_request is None else raw_request.transport
                    if raw_request is not None and (transport is None or transport.is_closing()):
                        return

    # -- state changes -------------------------------------------------------------------------------

    def _create(self, res: kmock.resource, namespace: str | None, data: Mapping[str, Any], *,
                keep_status: bool = False) -> Body:
        body = copy.deepcopy(dict(data))
        meta: Body = dict(body.get('metadata') or {})
        name: str = meta.get('name') or ''
        if not name:
            if not meta.get('generateName'):
                raise _error(422, 'Invalid', 'metadata.name: Required value: name or generateName required')
            for _ in range(100):
                name = meta['generateName'] + ''.join(random.choices(_NAME_CHARS, k=5))
                if self._get((res, namespace, name)) is None:
                    break
        key: Key = (res, namespace, name)
        _check_secret_size(res, name, body)
        if self._get(key) is not None:
            raise _error(409, 'AlreadyExists', f'{self._qualified(res)} "{name}" already exists',
                         name=name, group=res.group, kind=res.plural)
        if self._has_status(res) and not keep_status:
            body.pop('status', None)
        for field in _SYSTEM_METADATA:
            meta.pop(field, None)
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=_now(),
                    generation=1, resourceVersion=self._next_rv())
        if namespace is not None:
            meta['namespace'] = namespace
        rest = {k: v for k, v in body.items() if k not in ('apiVersion', 'kind', 'metadata')}
        body = {'apiVersion': self._api_version(res), 'kind': self._kind(res, body), 'metadata': meta, **rest}
        if key in self.objects:
            self.objects[key].create(body)
        else:
            self.objects[key] = body
        self._emit(res, 'ADDED', body)
        return body

    def _patch(self, request: kmock.Request) -> Body:
        key = self._key(request)
        old = self._require(key)
        patch = request.data
        if isinstance(patch, Mapping):
            self._check_version(key, old, (patch.get('metadata') or {}).get('resourceVersion'))
            new = apply_merge_patch(old, patch)
        elif isinstance(patch, list):
            try:
                new = jsonpatch.apply_patch(old, patch, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
                raise _error(422, 'Invalid', f'the server rejected our request: {e}',
                             name=key[2], group=key[0].group, kind=key[0].plural) from e
        else:
            raise _error(400, 'BadRequest', 'the body of the request was in an unknown format')
        return self._update(key, old, new, request.subresource)

    def _replace(self, request: kmock.Request) -> Body:
        key = self._key(request)
        old = self._require(key)
        data = self._require_body(request)
        self._check_version(key, old, data['metadata'].get('resourceVersion'))
        return self._update(key, old, copy.deepcopy(data), request.subresource)

    def _update(self, key: Key, old: Body, new: Body, subresource: str | None) -> Body:
        res = key[0]
        if subresource == 'status':  # only status changes, the rest of the body is ignored
            result = {k: v for k, v in old.items() if k != 'status'}
            if new.get('status') is not None:
                result['status'] = new['status']
        else:
            result = {k: v for k, v in new.items() if v is not None}
            if self._has_status(res):
                result.pop('status', None)
                if 'status' in old:
                    result['status'] = old['status']
        old_meta = old['metadata']
        meta = dict(result.get('metadata') or {})
        for field in _SYSTEM_METADATA:
            meta.pop(field, None)
            if field in old_meta:
                meta[field] = old_meta[field]
        result.update(apiVersion=old['apiVersion'], kind=old['kind'], metadata=meta)
        _check_secret_size(res, key[2], result)
        if result == old:
            return old  # a no-op write: no new resourceVersion, no event
        if _spec_part(result) != _spec_part(old):
            meta['generation'] = old_meta.get('generation', 0) + 1
        meta['resourceVersion'] = self._next_rv()
        if meta.get('deletionTimestamp') and not meta.get('finalizers'):
            self._remove(key, result)
        else:
            self.objects[key].create(result)
            self._emit(res, 'MODIFIED', result, old)
        return result

    def _delete(self, key: Key, options: Any) -> Body:
        old = self._require(key)
        meta = old['metadata']
        preconditions = options.get('preconditions') if isinstance(options, Mapping) else None
        if preconditions:
            self._check_version(key, old, preconditions.get('resourceVersion'))
            if preconditions.get('uid') and preconditions['uid'] != meta['uid']:
                raise _error(409, 'Conflict', f'Precondition failed: UID in precondition: '
                             f'{preconditions["uid"]}, UID in object meta: {meta["uid"]}', name=key[2])
        if meta.get('deletionTimestamp'):
            return old
        if meta.get('finalizers'):
            new = copy.deepcopy(old)
            new['metadata'].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0,
                                   generation=meta.get('generation', 0) + 1, resourceVersion=self._next_rv())
            self.objects[key].create(new)
            self._emit(key[0], 'MODIFIED', new, old)
            return new
        final = copy.deepcopy(old)
        final['metadata']['resourceVersion'] = self._next_rv()
        self._remove(key, final)
        return {'apiVersion': 'v1', 'kind': 'Status', 'metadata': {}, 'status': 'Success',
                'details': {'name': key[2], 'group': key[0].group, 'kind': key[0].plural, 'uid': meta['uid']}}

    def _remove(self, key: Key, final: Body) -> None:
        self.objects[key].create(final)
        self.objects[key].delete()
        self._emit(key[0], 'DELETED', final)
        if self.garbage_collection:
            alive = list(self._alive())
            uids = {body['metadata']['uid'] for _, body in alive}
            for dep_key, dep in alive:
                refs = dep['metadata'].get('ownerReferences') or []
                orphaned = refs and not any(ref.get('uid') in uids for ref in refs)
                if orphaned and self._get(dep_key) is not None:
                    self._delete(dep_key, None)

    # -- internals ------------------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _log(self, res: kmock.resource) -> _EventLog:
        if res not in self._logs:
            self._logs[res] = _EventLog()
        return self._logs[res]

    def _emit(self, res: kmock.resource, etype: str, body: Body, old: Body | None = None) -> None:
        log = self._log(res)
        log.events.append((int(body['metadata']['resourceVersion']), etype, body, old))
        if len(log.events) > self.event_log_limit:
            dropped = len(log.events) - self.event_log_limit // 2
            log.floor = log.events[dropped - 1][0]
            del log.events[:dropped]
        log.wakeup.set()
        log.wakeup = asyncio.Event()

    @staticmethod
    def _translate(etype: str, new: Body, old: Body | None, match: Matcher) -> Body | None:
        matches_now = match(new)
        if etype != 'MODIFIED':
            return {'type': etype, 'object': new} if matches_now else None
        matched_before = old is not None and match(old)
        if matches_now:
            return {'type': 'MODIFIED' if matched_before else 'ADDED', 'object': new}
        return {'type': 'DELETED', 'object': new} if matched_before else None

    def _matcher(self, request: kmock.Request) -> Matcher:
        labels = parse_label_selector(request.params.get('labelSelector', ''))
        fields = parse_field_selector(request.params.get('fieldSelector', ''))
        namespace, name = request.namespace, request.name

        def match(body: Mapping[str, Any]) -> bool:
            meta = body.get('metadata') or {}
            return ((namespace is None or meta.get('namespace') == namespace)
                    and (name is None or meta.get('name') == name)
                    and labels(meta.get('labels') or {}) and fields(body))
        return match

    def _alive(self) -> list[tuple[Key, Body]]:
        return [(key, obj.raw) for key, obj in self.objects.items() if not obj.deleted]

    def _get(self, key: Key) -> Body | None:
        if key not in self.objects or self.objects[key].deleted:
            return None
        return self.objects[key].raw

    def _require(self, key: Key) -> Body:
        body = self._get(key)
        if body is None:
            raise _error(404, 'NotFound', f'{self._qualified(key[0])} "{key[2]}" not found',
                         name=key[2], group=key[0].group, kind=key[0].plural)
        return copy.deepcopy(body)

    def _require_known(self, res: kmock.resource | None) -> kmock.resource:
        if res is None or not any(known == res for known in self._get_resources()):
            raise _error(404, 'NotFound', 'the server could not find the requested resource')
        return res

    @staticmethod
    def _require_body(request: kmock.Request) -> Body:
        if not isinstance(request.data, Mapping):
            raise _error(400, 'BadRequest', 'the body of the request was in an unknown format')
        data = dict(request.data)
        data['metadata'] = dict(data.get('metadata') or {})
        return data

    def _check_version(self, key: Key, old: Body, expected: Any) -> None:
        if expected is not None and str(expected) != old['metadata']['resourceVersion']:
            raise _error(409, 'Conflict', f'Operation cannot be fulfilled on {self._qualified(key[0])} '
                         f'"{key[2]}": the object has been modified; please apply your changes to the latest '
                         'version and try again', name=key[2], group=key[0].group, kind=key[0].plural)

    def _key(self, request: kmock.Request) -> Key:
        assert request.resource is not None and request.name is not None
        return request.resource, self._namespace_for(request.resource, request.namespace), request.name

    def _info(self, res: kmock.resource) -> kmock.ResourceInfo | None:
        return self.resources[res] if res in self.resources else None  # noqa: SIM401  # auto-creates

    def _namespace_for(self, res: kmock.resource, namespace: str | None) -> str | None:
        info = self._info(res)
        if info is not None and info.namespaced is not None:
            namespaced = info.namespaced
        else:
            namespaced = namespace is not None
        return (namespace or 'default') if namespaced else None

    def _has_status(self, res: kmock.resource) -> bool:
        info = self._info(res)
        return info is not None and 'status' in info.subresources

    def _kind(self, res: kmock.resource, body: Mapping[str, Any]) -> str:
        info = self._info(res)
        return (info.kind if info is not None and info.kind else None) or body.get('kind') or \
            str(res.plural).capitalize()

    @staticmethod
    def _api_version(res: kmock.resource) -> str:
        return f'{res.group}/{res.version}' if res.group else str(res.version)

    @staticmethod
    def _qualified(res: kmock.resource) -> str:
        return f'{res.plural}.{res.group}' if res.group else str(res.plural)


Forward = Callable[[kmock.Request], Awaitable[aiohttp.web.StreamResponse]]
Intercept = Callable[['KeyplaneEmulator', kmock.Request, Forward], Awaitable[aiohttp.web.StreamResponse]]


@contextlib.contextmanager
def requests_intercepted(intercept: Intercept) -> Iterator[None]:
    """For the block, every request of every emulator goes through ``intercept(emulator, request, forward)``,
    which answers it itself or hands it on with ``await forward(request)``: the fault suite's injected
    errors and the benchmark's timing (harness instruments; no API server has them). Blocks nest."""
    original = KeyplaneEmulator._handle

    async def handle(emulator: KeyplaneEmulator, request: kmock.Request) -> aiohttp.web.StreamResponse:
        return await intercept(emulator, request, lambda forwarded: original(emulator, forwarded))

    KeyplaneEmulator._handle = handle  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        KeyplaneEmulator._handle = original  # type: ignore[method-assign]

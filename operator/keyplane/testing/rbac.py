"""
Authentication and RBAC authorization for the emulated API server, as a real kube-apiserver does them.

* :func:`request_attributes` turns an HTTP request (method, path, query) into the attributes RBAC
  sees (verb, API group, resource, subresource, namespace, name), following the API server's
  ``RequestInfoFactory``: ``GET`` of a name is ``get``, of a collection ``list``, with ``watch=true``
  ``watch``; ``POST`` ``create``; ``PUT`` ``update``; ``PATCH`` ``patch``; ``DELETE`` ``delete``
  (``deletecollection`` without a name); a ``metadata.name=`` field selector names the object of a
  list or watch.
* :class:`Authorizer` holds bearer tokens (static, or issued by a TokenRequest) and evaluates the
  PolicyRules of ClusterRoles bound by ClusterRoleBindings (cluster-wide) and of Roles/ClusterRoles
  bound by RoleBindings (in the binding's namespace only). An admin token is allowed everything, like
  ``system:masters``. Every authenticated user may read discovery (``/api``, ``/apis``, ``/version``,
  as the default ``system:discovery`` role allows). It remembers what each user was allowed and
  denied, for least-privilege checks.
* :func:`render_chart_rbac` renders the project's Helm chart (``helm template``) and keeps its
  ServiceAccount, ClusterRoles, Roles and bindings: the harness authorizes against the real chart.

Failures look like a real server's: a ``Status`` with code 401 ``Unauthorized``, or 403
``Forbidden`` with the message ``secrets "x" is forbidden: User "system:serviceaccount:ns:sa" cannot
get resource "secrets" in API group "" in the namespace "ns"``.
"""
from __future__ import annotations

import collections
import functools
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import attrs
import kmock
import yaml

__all__ = ['ADMIN_USER', 'Authorizer', 'ChartRBAC', 'ChartUnavailableError', 'RequestAttributes', 'User',
           'render_chart_rbac', 'request_attributes', 'service_account_user']

ADMIN_USER = 'kubernetes-admin'
_ADMIN_GROUPS = ('system:masters', 'system:authenticated')
_NAMESPACE_SUBRESOURCES = ('status', 'finalize')
_RBAC_KINDS = ('ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding')
# Non-resource paths every authenticated user may GET (system:discovery, system:public-info-viewer).
_PUBLIC_PATHS = ('/api', '/api/*', '/apis', '/apis/*', '/version', '/version/', '/healthz', '/livez',
                 '/readyz', '/openapi', '/openapi/*')
_REPO = Path(__file__).resolve().parents[3]
CHART = _REPO / 'helm' / 'keyplane'


@attrs.frozen
class User:
    """An authenticated user: its name and groups."""
    name: str
    groups: tuple[str, ...] = ('system:authenticated',)


def service_account_user(namespace: str, name: str) -> User:
    """The user a ServiceAccount's token authenticates as."""
    return User(f'system:serviceaccount:{namespace}:{name}',
                ('system:serviceaccounts', f'system:serviceaccounts:{namespace}', 'system:authenticated'))


@attrs.frozen
class RequestAttributes:
    """What RBAC sees of a request. ``resource`` is empty for non-resource requests (then ``path``)."""
    verb: str
    path: str
    api_group: str = ''
    resource: str = ''
    subresource: str = ''
    namespace: str = ''
    name: str = ''

    @property
    def is_resource_request(self) -> bool:
        return bool(self.resource)

    @property
    def qualified_resource(self) -> str:
        return f'{self.resource}.{self.api_group}' if self.api_group else self.resource

    @property
    def permission(self) -> tuple[str, str, str, str, bool]:
        """(verb, API group, resource, subresource, namespaced?): what a least-privilege check compares."""
        return self.verb, self.api_group, self.resource, self.subresource, bool(self.namespace)


def request_attributes(method: str, path: str, query: Mapping[str, str] | str = '') -> RequestAttributes:
    """The RBAC attributes of an HTTP request, as the API server's RequestInfoFactory derives them."""
    params = {k: v[-1] for k, v in parse_qs(query).items()} if isinstance(query, str) else dict(query)
    method = method.upper()
    parts = [part for part in path.strip('/').split('/') if part]
    if len(parts) < 2 or parts[0] not in ('api', 'apis') or (parts[0] == 'apis' and len(parts) < 3):
        verb = {'POST': 'post', 'PUT': 'put', 'PATCH': 'patch', 'DELETE': 'delete', 'HEAD': 'head'}.get(method, 'get')
        return RequestAttributes(verb=verb, path=path)  # discovery and other non-resource URLs
    group = '' if parts[0] == 'api' else parts[1]
    rest = parts[2:] if parts[0] == 'api' else parts[3:]
    if not rest:
        return RequestAttributes(verb='get' if method == 'GET' else method.lower(), path=path)
    namespace = ''
    if rest[0] == 'namespaces' and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]  # a namespaced resource; otherwise the namespace object itself
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ''
    subresource = rest[2] if len(rest) > 2 else ''
    watch = params.get('watch', '').lower() in ('true', '1')
    if method == 'GET':
        verb = 'watch' if watch else ('get' if name else 'list')
    else:
        verb = {'POST': 'create', 'PUT': 'update', 'PATCH': 'patch',
                'DELETE': 'delete' if name else 'deletecollection'}.get(method, method.lower())
    if verb in ('list', 'watch') and not name:  # a list of one object is authorized for that name
        for requirement in params.get('fieldSelector', '').split(','):
            key, op, value = requirement.partition('=')  # metadata.name=x or metadata.name==x
            if op and key.strip() == 'metadata.name':
                name = value.lstrip('=').strip()
    return RequestAttributes(verb=verb, path=path, api_group=group, resource=resource,
                             subresource=subresource, namespace=namespace, name=name)


def _covers(values: Iterable[str], wanted: str) -> bool:
    return any(value in ('*', wanted) for value in values)


def rule_allows(rule: Mapping[str, Any], attributes: RequestAttributes) -> bool:
    """Whether one PolicyRule allows the request (Kubernetes' RuleAllows)."""
    if not _covers(rule.get('verbs') or (), attributes.verb):
        return False
    if not attributes.is_resource_request:
        return any(url == attributes.path or url == '*' or (url.endswith('*') and attributes.path.startswith(url[:-1]))
                   for url in rule.get('nonResourceURLs') or ())
    if not _covers(rule.get('apiGroups') or (), attributes.api_group):
        return False
    resources = rule.get('resources') or ()
    if attributes.subresource:
        combined = f'{attributes.resource}/{attributes.subresource}'
        if not any(res in ('*', combined, f'*/{attributes.subresource}') for res in resources):
            return False
    elif not _covers(resources, attributes.resource):
        return False
    names = rule.get('resourceNames') or ()
    return not names or attributes.name in names


def _binds(binding: Mapping[str, Any], user: User) -> bool:
    for subject in binding.get('subjects') or ():
        kind, name = subject.get('kind'), subject.get('name')
        if kind == 'ServiceAccount' and user.name == f"system:serviceaccount:{subject.get('namespace')}:{name}":
            return True
        if (kind == 'User' and name == user.name) or (kind == 'Group' and name in user.groups):
            return True
    return False


@attrs.frozen
class Decision:
    """One authorization decision (kept by the :class:`Authorizer`)."""
    user: str
    attributes: RequestAttributes
    allowed: bool


class Authorizer:
    """Bearer-token authentication and RBAC authorization over a set of RBAC objects (see module doc)."""

    def __init__(self, policy: Iterable[Mapping[str, Any]] = (), *, admin_token: str | None = None) -> None:
        self.admin_token = admin_token or secrets.token_urlsafe(24)
        self._tokens: dict[str, User] = {self.admin_token: User(ADMIN_USER, _ADMIN_GROUPS)}
        self._objects: list[Mapping[str, Any]] = []
        #: user name -> permission (see RequestAttributes.permission) -> how many requests were allowed
        self.allowed: dict[str, collections.Counter[tuple[str, str, str, str, bool]]] = \
            collections.defaultdict(collections.Counter)
        #: every denied request, in order (for test failure messages)
        self.denied: list[Decision] = []
        #: every request without a valid token (answered 401), as "METHOD /path"
        self.unauthenticated: list[str] = []
        self.load(policy)

    # -- policy and tokens -----------------------------------------------------------------------

    def load(self, policy: Iterable[Mapping[str, Any]]) -> None:
        """Replace the RBAC objects (other kinds in ``policy`` are ignored)."""
        self._objects = [obj for obj in policy if obj.get('kind') in _RBAC_KINDS]

    def add_token(self, token: str, user: User) -> None:
        self._tokens[token] = user

    def issue_token(self, user: User) -> str:
        """A new random bearer token for ``user`` (a static token, or a TokenRequest's)."""
        token = secrets.token_urlsafe(32)
        self._tokens[token] = user
        return token

    def revoke(self, token: str) -> None:
        self._tokens.pop(token, None)

    def authenticate(self, headers: Mapping[str, str]) -> User | None:
        """The user of the request's ``Authorization: Bearer`` token, or None (anonymous or unknown)."""
        value = next((v for k, v in headers.items() if k.lower() == 'authorization'), '')
        scheme, _, token = value.strip().partition(' ')
        if scheme.lower() != 'bearer' or not token.strip():
            return None
        return self._tokens.get(token.strip())

    # -- authorization ----------------------------------------------------------------------------

    def rules_for(self, user: User, namespace: str) -> list[Mapping[str, Any]]:
        """Every PolicyRule that applies to ``user`` for a request in ``namespace`` ('' = cluster scope)."""
        roles = {(obj['kind'], (obj.get('metadata') or {}).get('namespace') or '', obj['metadata']['name']): obj
                 for obj in self._objects if obj['kind'] in ('ClusterRole', 'Role')}
        rules: list[Mapping[str, Any]] = []
        for binding in self._objects:
            kind = binding['kind']
            bound_ns = (binding.get('metadata') or {}).get('namespace') or ''
            if kind not in ('ClusterRoleBinding', 'RoleBinding') or not _binds(binding, user):
                continue
            if kind == 'RoleBinding' and bound_ns != namespace:
                continue
            ref = binding.get('roleRef') or {}
            role_ns = bound_ns if ref.get('kind') == 'Role' else ''
            if kind == 'ClusterRoleBinding' and ref.get('kind') != 'ClusterRole':
                continue
            role = roles.get((ref.get('kind', ''), role_ns, ref.get('name', '')))
            if role is not None:
                rules.extend(role.get('rules') or ())
        return rules

    def allows(self, user: User, attributes: RequestAttributes) -> bool:
        """Whether RBAC allows the request (no recording)."""
        if 'system:masters' in user.groups:
            return True
        if not attributes.is_resource_request and attributes.verb == 'get' and any(
                attributes.path == p or (p.endswith('*') and attributes.path.startswith(p[:-1]))
                for p in _PUBLIC_PATHS):
            return True
        return any(rule_allows(rule, attributes) for rule in self.rules_for(user, attributes.namespace))

    def authorize(self, user: User, attributes: RequestAttributes) -> bool:
        """Whether RBAC allows the request; the decision is recorded."""
        allowed = self.allows(user, attributes)
        if allowed:
            if attributes.is_resource_request:
                self.allowed[user.name][attributes.permission] += 1
        else:
            self.denied.append(Decision(user.name, attributes, allowed))
        return allowed

    def check(self, method: str, path: str, query: Mapping[str, str] | str,
              headers: Mapping[str, str]) -> tuple[User, RequestAttributes]:
        """Authenticate and authorize a request, or raise the 401/403 a real API server answers."""
        user = self.authenticate(headers)
        if user is None:
            self.unauthenticated.append(f'{method} {path}')
            raise kmock.KubernetesError(status=401, reason='Unauthorized', message='Unauthorized', details={})
        attributes = request_attributes(method, path, query)
        if not self.authorize(user, attributes):
            raise forbidden(user, attributes)
        return user, attributes

    def reset_records(self) -> None:
        self.allowed.clear()
        self.denied.clear()
        self.unauthenticated.clear()

    def refusals(self, user: User | None = None) -> list[str]:
        """The 401s and (``user``'s, else everyone's) 403s so far, one line each, for assertion messages."""
        lines = [f'401 {request}' for request in self.unauthenticated]
        lines += [f'403 {d.user}: {d.attributes.verb} {d.attributes.path}'
                  for d in self.denied if user is None or d.user == user.name]
        return lines


def forbidden(user: User, attributes: RequestAttributes) -> kmock.KubernetesError:
    """The 403 of a real API server (its forbiddenMessage and NewForbidden wording)."""
    if not attributes.is_resource_request:
        message = f'forbidden: User "{user.name}" cannot {attributes.verb} path "{attributes.path}"'
        return kmock.KubernetesError(status=403, reason='Forbidden', message=message, details={})
    resource = attributes.resource + (f'/{attributes.subresource}' if attributes.subresource else '')
    scope = f'in the namespace "{attributes.namespace}"' if attributes.namespace else 'at the cluster scope'
    reason = (f'User "{user.name}" cannot {attributes.verb} resource "{resource}" '
              f'in API group "{attributes.api_group}" {scope}')
    subject = attributes.qualified_resource + (f' "{attributes.name}"' if attributes.name else '')
    return kmock.KubernetesError(status=403, reason='Forbidden', message=f'{subject} is forbidden: {reason}',
                                 details={'name': attributes.name, 'group': attributes.api_group,
                                          'kind': attributes.resource})


# -- the chart ---------------------------------------------------------------------------------------

class ChartUnavailableError(RuntimeError):
    """helm or the chart is not there (e.g. ``keyplane demo`` from an installed package)."""


@attrs.frozen
class ChartRBAC:
    """The RBAC objects of a rendered chart and the ServiceAccount they are bound to."""
    objects: tuple[Mapping[str, Any], ...]
    namespace: str
    service_account: str

    @property
    def user(self) -> User:
        return service_account_user(self.namespace, self.service_account)

    def granted(self, kinds: tuple[str, ...] = ('ClusterRole', 'Role')) -> set[tuple[str, str, str]]:
        """Every (verb, API group, resource[/subresource]) a rule of the chart's ``kinds`` of roles grants
        (taken literally: a ``*`` stays a ``*``)."""
        return {(verb, group, resource)
                for obj in self.objects if obj['kind'] in kinds
                for rule in obj.get('rules') or ()
                for verb in rule.get('verbs') or ()
                for group in rule.get('apiGroups') or ()
                for resource in rule.get('resources') or ()}


def find_helm() -> str | None:
    """helm from PATH, else the copy ``make tools`` puts in .tools/bin of the repository."""
    found = shutil.which('helm')
    if found:
        return found
    local = _REPO / '.tools' / 'bin' / 'helm'
    return str(local) if local.is_file() and os.access(local, os.X_OK) else None


def render_chart_rbac(values: Mapping[str, Any] | None = None, *, release: str = 'keyplane',
                      namespace: str = 'keyplane-system') -> ChartRBAC:
    """``helm template`` the chart with ``values`` and keep its ServiceAccount and RBAC objects."""
    key = yaml.safe_dump(dict(values or {}), sort_keys=True)
    return _render(key, release, namespace)


@functools.lru_cache(maxsize=16)
def _render(values_yaml: str, release: str, namespace: str) -> ChartRBAC:
    helm = find_helm()
    if helm is None or not (CHART / 'Chart.yaml').is_file():
        raise ChartUnavailableError(f'helm (PATH or .tools/bin; `make tools`) and the chart ({CHART}) are needed '
                                    'to authorize against the chart\'s RBAC')
    result = subprocess.run([helm, 'template', release, str(CHART), '--namespace', namespace, '-f', '-'],
                            input=values_yaml, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise ChartUnavailableError(f'helm template failed: {result.stderr.strip()}')
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if isinstance(doc, dict)]
    accounts = [doc for doc in docs if doc.get('kind') == 'ServiceAccount']
    if len(accounts) != 1:
        raise ChartUnavailableError(f'the chart rendered {len(accounts)} ServiceAccounts, expected one')
    objects = tuple(doc for doc in docs if doc.get('kind') in (*_RBAC_KINDS, 'ServiceAccount'))
    return ChartRBAC(objects=objects, namespace=accounts[0]['metadata'].get('namespace') or namespace,
                     service_account=accounts[0]['metadata']['name'])

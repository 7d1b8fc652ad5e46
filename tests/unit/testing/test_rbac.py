"""The emulator's authentication and RBAC authorization: request attributes, rule evaluation, the
chart's rendered roles, and 401/403/TokenRequest over HTTP as a real API server answers them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import kubernetes
import pytest

from keyplane.testing import EmulatedCluster, emulated_cluster, render_chart_rbac
from keyplane.testing.rbac import (
    Authorizer,
    ChartUnavailableError,
    RequestAttributes,
    User,
    find_helm,
    request_attributes,
    rule_allows,
    service_account_user,
)
from support import missing

SA = service_account_user('keyplane-system', 'keyplane')


@pytest.fixture()
def helm_available() -> None:
    if find_helm() is None:
        missing('helm not found (run `make tools`)')


needs_helm = pytest.mark.usefixtures('helm_available')


@pytest.mark.parametrize(('method', 'path', 'query', 'expected'), [
    ('GET', '/api/v1/namespaces/ns/secrets/x', '', ('get', '', 'secrets', '', 'ns', 'x')),
    ('GET', '/api/v1/namespaces/ns/secrets', '', ('list', '', 'secrets', '', 'ns', '')),
    ('GET', '/api/v1/secrets', 'watch=true', ('watch', '', 'secrets', '', '', '')),
    ('GET', '/api/v1/namespaces/ns/secrets', 'watch=1&fieldSelector=metadata.name%3Dx',
     ('watch', '', 'secrets', '', 'ns', 'x')),
    ('POST', '/api/v1/namespaces/ns/events', '', ('create', '', 'events', '', 'ns', '')),
    ('PUT', '/apis/apps/v1/namespaces/ns/deployments/web', '', ('update', 'apps', 'deployments', '', 'ns', 'web')),
    ('PATCH', '/apis/keyplane.dev/v1alpha1/namespaces/ns/scimconnections/okta/status', '',
     ('patch', 'keyplane.dev', 'scimconnections', 'status', 'ns', 'okta')),
    ('DELETE', '/api/v1/namespaces/ns/secrets/x', '', ('delete', '', 'secrets', '', 'ns', 'x')),
    ('DELETE', '/api/v1/namespaces/ns/secrets', '', ('deletecollection', '', 'secrets', '', 'ns', '')),
    # The namespace object itself: its own name is its namespace, as in the real RequestInfoFactory.
    ('GET', '/api/v1/namespaces/team-a', '', ('get', '', 'namespaces', '', 'team-a', 'team-a')),
    ('PUT', '/api/v1/namespaces/team-a/finalize', '', ('update', '', 'namespaces', 'finalize', 'team-a', 'team-a')),
    ('GET', '/api/v1/namespaces', 'watch=true', ('watch', '', 'namespaces', '', '', '')),
    ('GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', '',
     ('list', 'apiextensions.k8s.io', 'customresourcedefinitions', '', '', '')),
    ('POST', '/api/v1/namespaces/ns/serviceaccounts/sa/token', '',
     ('create', '', 'serviceaccounts', 'token', 'ns', 'sa')),
])
def test_request_attributes(method: str, path: str, query: str, expected: tuple[str, ...]) -> None:
    attrs = request_attributes(method, path, query)
    assert (attrs.verb, attrs.api_group, attrs.resource, attrs.subresource, attrs.namespace, attrs.name) == expected


@pytest.mark.parametrize('path', ['/api', '/apis', '/api/v1', '/apis/keyplane.dev/v1alpha1', '/version'])
def test_discovery_is_a_non_resource_request_every_user_may_get(path: str) -> None:
    attrs = request_attributes('GET', path)
    assert not attrs.is_resource_request
    assert Authorizer().allows(User('someone'), attrs)
    assert not Authorizer().allows(User('someone'), request_attributes('GET', '/metrics'))


def _attrs(verb: str, resource: str, *, group: str = '', sub: str = '', ns: str = 'ns', name: str = '',
           ) -> RequestAttributes:
    return RequestAttributes(verb=verb, path='/', api_group=group, resource=resource, subresource=sub,
                             namespace=ns, name=name)


def test_rule_matching_verbs_groups_resources_subresources_and_names() -> None:
    rule = {'apiGroups': ['keyplane.dev'], 'resources': ['scimconnections', 'ssodomains/status'], 'verbs': ['patch']}
    assert rule_allows(rule, _attrs('patch', 'scimconnections', group='keyplane.dev'))
    assert not rule_allows(rule, _attrs('get', 'scimconnections', group='keyplane.dev'))
    assert not rule_allows(rule, _attrs('patch', 'scimconnections', group=''))
    # A resource does not grant its subresources, and a subresource not its resource.
    assert not rule_allows(rule, _attrs('patch', 'scimconnections', group='keyplane.dev', sub='status'))
    assert rule_allows(rule, _attrs('patch', 'ssodomains', group='keyplane.dev', sub='status'))
    assert not rule_allows(rule, _attrs('patch', 'ssodomains', group='keyplane.dev'))
    wildcard = {'apiGroups': ['*'], 'resources': ['*/status'], 'verbs': ['*']}
    assert rule_allows(wildcard, _attrs('update', 'anything', group='x.dev', sub='status'))
    assert not rule_allows(wildcard, _attrs('update', 'anything', group='x.dev'))
    named = {'apiGroups': [''], 'resources': ['secrets'], 'verbs': ['get', 'create'], 'resourceNames': ['a']}
    assert rule_allows(named, _attrs('get', 'secrets', name='a'))
    assert not rule_allows(named, _attrs('get', 'secrets', name='b'))
    assert not rule_allows(named, _attrs('create', 'secrets'))  # a create has no name yet


def _role(kind: str, name: str, rules: list[dict[str, Any]], ns: str | None = None) -> dict[str, Any]:
    return {'kind': kind, 'metadata': {'name': name, **({'namespace': ns} if ns else {})}, 'rules': rules}


def _binding(kind: str, role_kind: str, role: str, ns: str | None = None, subject: dict[str, str] | None = None,
             ) -> dict[str, Any]:
    return {'kind': kind, 'metadata': {'name': role, **({'namespace': ns} if ns else {})},
            'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': role_kind, 'name': role},
            'subjects': [subject or {'kind': 'ServiceAccount', 'name': 'keyplane', 'namespace': 'keyplane-system'}]}


SECRETS = [{'apiGroups': [''], 'resources': ['secrets'], 'verbs': ['get']}]


def test_bindings_scope_the_rules() -> None:
    authorizer = Authorizer([
        _role('ClusterRole', 'reader', SECRETS),
        _binding('RoleBinding', 'ClusterRole', 'reader', ns='team-a'),  # a ClusterRole, bound in one namespace
        _role('Role', 'local', [{'apiGroups': [''], 'resources': ['configmaps'], 'verbs': ['get']}], ns='team-b'),
        _binding('RoleBinding', 'Role', 'local', ns='team-b'),
        _role('Role', 'unbound', SECRETS, ns='team-c'),
        _binding('RoleBinding', 'Role', 'other-sa', ns='team-c',
                 subject={'kind': 'ServiceAccount', 'name': 'other', 'namespace': 'keyplane-system'}),
    ])
    assert authorizer.allows(SA, _attrs('get', 'secrets', ns='team-a'))
    assert not authorizer.allows(SA, _attrs('get', 'secrets', ns='team-b'))
    assert not authorizer.allows(SA, _attrs('get', 'secrets', ns=''))  # not cluster-wide
    assert authorizer.allows(SA, _attrs('get', 'configmaps', ns='team-b'))
    assert not authorizer.allows(SA, _attrs('get', 'configmaps', ns='team-a'))
    assert not authorizer.allows(SA, _attrs('get', 'secrets', ns='team-c'))
    cluster_wide = Authorizer([_role('ClusterRole', 'reader', SECRETS),
                               _binding('ClusterRoleBinding', 'ClusterRole', 'reader',
                                        subject={'kind': 'Group', 'name': 'system:serviceaccounts:keyplane-system'})])
    assert cluster_wide.allows(SA, _attrs('get', 'secrets', ns='any'))
    assert cluster_wide.allows(SA, _attrs('get', 'secrets', ns=''))
    assert not cluster_wide.allows(service_account_user('default', 'keyplane'), _attrs('get', 'secrets'))


def test_tokens_authenticate_and_the_admin_may_do_anything() -> None:
    authorizer = Authorizer()
    token = authorizer.issue_token(SA)
    assert authorizer.authenticate({'Authorization': f'Bearer {token}'}) == SA
    assert authorizer.authenticate({'authorization': f'bearer {token}'}) == SA
    assert authorizer.authenticate({'Authorization': 'Bearer wrong'}) is None
    assert authorizer.authenticate({'Authorization': f'Basic {token}'}) is None
    assert authorizer.authenticate({}) is None
    admin = authorizer.authenticate({'Authorization': f'Bearer {authorizer.admin_token}'})
    assert admin is not None and authorizer.allows(admin, _attrs('deletecollection', 'secrets'))
    assert not authorizer.allows(SA, _attrs('get', 'secrets'))
    authorizer.revoke(token)
    assert authorizer.authenticate({'Authorization': f'Bearer {token}'}) is None


@needs_helm
def test_the_charts_rendered_rules_in_both_modes() -> None:
    default = Authorizer(render_chart_rbac().objects)
    assert render_chart_rbac().user == SA
    assert default.allows(SA, _attrs('create', 'secrets', ns='anywhere'))
    assert default.allows(SA, _attrs('patch', 'scimconnections', group='keyplane.dev', sub='status', ns='x', name='a'))
    assert not default.allows(SA, _attrs('list', 'secrets', ns='x'))  # Secrets by name only
    assert not default.allows(SA, _attrs('update', 'scimconnections', group='keyplane.dev', ns='x', name='a'))
    assert not default.allows(SA, _attrs('patch', 'clusterkopfpeerings', group='kopf.dev', ns=''))  # HA only
    assert Authorizer(render_chart_rbac({'ha': {'enabled': True}}).objects).allows(
        SA, _attrs('patch', 'clusterkopfpeerings', group='kopf.dev', ns='', name='keyplane'))

    scoped = render_chart_rbac({'watchNamespaces': ['team-a']}, release='kp', namespace='ops')
    assert scoped.user == service_account_user('ops', 'kp-keyplane')
    authorizer = Authorizer(scoped.objects)
    assert authorizer.allows(scoped.user, _attrs('create', 'secrets', ns='team-a'))
    assert not authorizer.allows(scoped.user, _attrs('create', 'secrets', ns='team-b'))
    assert authorizer.allows(scoped.user, _attrs('watch', 'namespaces', ns=''))
    assert authorizer.allows(scoped.user, _attrs('list', 'customresourcedefinitions', group='apiextensions.k8s.io',
                                                 ns=''))
    assert not authorizer.allows(SA, _attrs('create', 'secrets', ns='team-a'))  # another release's account


def test_without_helm_the_chart_cannot_be_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyplane.testing import rbac

    monkeypatch.setattr(rbac, 'find_helm', lambda: None)
    with pytest.raises(ChartUnavailableError, match='make tools'):
        render_chart_rbac({'nameOverride': 'uncached-by-this-test'})


# -- over HTTP ------------------------------------------------------------------------------------------

@pytest.fixture()
async def chart_cluster() -> Any:
    if find_helm() is None:
        missing('helm not found (run `make tools`)')
    async with emulated_cluster(rbac=render_chart_rbac()) as cluster:
        yield cluster


async def test_401_without_or_with_a_wrong_token(chart_cluster: EmulatedCluster) -> None:
    async with httpx.AsyncClient(base_url=chart_cluster.url) as client:
        for headers in ({}, {'Authorization': 'Bearer not-a-token'}):
            response = await client.get('/api/v1/namespaces/default/secrets/x', headers=headers)
            assert response.status_code == 401
            assert response.json() == {'apiVersion': 'v1', 'kind': 'Status', 'metadata': {}, 'status': 'Failure',
                                       'message': 'Unauthorized', 'reason': 'Unauthorized', 'code': 401}
    assert chart_cluster.authorizer.unauthenticated == ['GET /api/v1/namespaces/default/secrets/x'] * 2


async def test_403_names_the_user_verb_resource_group_and_namespace(chart_cluster: EmulatedCluster) -> None:
    headers = {'Authorization': f'Bearer {chart_cluster.operator_token}'}
    async with httpx.AsyncClient(base_url=chart_cluster.url, headers=headers) as client:
        response = await client.get('/api/v1/namespaces/default/secrets')
        assert response.status_code == 403
        assert response.json()['message'] == (
            'secrets is forbidden: User "system:serviceaccount:keyplane-system:keyplane" cannot list resource '
            '"secrets" in API group "" in the namespace "default"')
        assert response.json()['reason'] == 'Forbidden'
        response = await client.put('/apis/keyplane.dev/v1alpha1/namespaces/ns/scimconnections/okta/status', json={})
        assert response.json()['message'] == (
            'scimconnections.keyplane.dev "okta" is forbidden: User "system:serviceaccount:keyplane-system:keyplane" '
            'cannot update resource "scimconnections/status" in API group "keyplane.dev" in the namespace "ns"')
        response = await client.get('/api/v1/nodes')
        assert response.json()['message'].endswith('cannot list resource "nodes" in API group "" at the cluster scope')
        assert (await client.get('/apis')).status_code == 200  # discovery
        assert (await client.get('/api/v1/namespaces/default/secrets/x')).status_code == 404  # allowed, absent
    assert [d.attributes.verb for d in chart_cluster.authorizer.denied] == ['list', 'update', 'list']
    assert chart_cluster.authorizer.allowed[SA.name] == {('get', '', 'secrets', '', True): 1}


async def test_the_operator_kubeconfig_is_the_service_account_and_setup_is_admin(
        chart_cluster: EmulatedCluster) -> None:
    # The cluster's helpers act as the admin: a Secret list the ServiceAccount may not do.
    assert await chart_cluster.list('v1', 'Secret', 'default') == []

    def as_the_operator() -> int:  # the kubernetes client is synchronous: in a thread, off the server's loop
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=chart_cluster.kubeconfig_path,
                                           client_configuration=configuration)
        with kubernetes.client.ApiClient(configuration) as api:
            core = kubernetes.client.CoreV1Api(api)
            core.create_namespaced_secret('default', {'metadata': {'name': 's'}, 'stringData': {'k': 'v'}})
            try:
                core.list_namespaced_secret('default')
            except kubernetes.client.ApiException as e:
                return int(e.status)
            return 200

    assert await asyncio.to_thread(as_the_operator) == 403
    assert await chart_cluster.get('v1', 'Secret', 'default', 's') is not None


async def test_token_request_issues_a_token_of_an_existing_service_account(chart_cluster: EmulatedCluster) -> None:
    admin = {'Authorization': f'Bearer {chart_cluster.authorizer.admin_token}'}
    async with httpx.AsyncClient(base_url=chart_cluster.url) as client:
        path = '/api/v1/namespaces/keyplane-system/serviceaccounts/keyplane/token'
        response = await client.post(path, json={'apiVersion': 'authentication.k8s.io/v1', 'kind': 'TokenRequest',
                                                 'spec': {'expirationSeconds': 600}}, headers=admin)
        assert response.status_code == 201
        body = response.json()
        assert body['kind'] == 'TokenRequest' and body['spec']['expirationSeconds'] == 600
        token = body['status']['token']
        mine = {'Authorization': f'Bearer {token}'}
        assert (await client.get('/api/v1/namespaces/x/secrets/y', headers=mine)).status_code == 404  # allowed
        assert (await client.get('/api/v1/namespaces/x/secrets', headers=mine)).status_code == 403
        # The ServiceAccount may not mint tokens for itself; an absent account gets none.
        assert (await client.post(path, json={}, headers=mine)).status_code == 403
        missing = '/api/v1/namespaces/keyplane-system/serviceaccounts/nobody/token'
        assert (await client.post(missing, json={}, headers=admin)).status_code == 404

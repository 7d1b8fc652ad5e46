"""The Helm chart: lint, schema, every rendered object valid for Kubernetes, security, RBAC, HA, CRDs."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from keyplane.api.crds import all_crds
from keyplane.health import argocd_cm_entries, health_scripts
from keyplane.settings import Settings, load

from .conftest import CHART, NAMESPACE, RELEASE, Render, container_env, find, helm_template, workload

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas available.
K8S_VERSIONS = ("1.28", kubernetes_validate.utils.latest_version())

SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "ha": {"ha": {"enabled": True, "replicas": 3}},
    "watch-namespaces": {"watchNamespaces": ["team-a", "team-b"]},
    "ha-watch-namespaces": {"ha": {"enabled": True, "peeringObjectAsHook": False},
                            "watchNamespaces": ["team-a", "team-b"]},
    "network-policy": {"networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["10.0.0.1/32"]},
                                         "extraEgress": [{"ports": [{"port": 8443, "protocol": "TCP"}]}]}},
    "crds-managed": {"crds": {"managed": True}},
    "argocd-health": {"argocd": {"healthChecks": {"enabled": True}}},
    "everything": {
        "ha": {"enabled": True}, "watchNamespaces": ["team-a"], "networkPolicy": {"enabled": True},
        "crds": {"managed": True}, "argocd": {"healthChecks": {"enabled": True}}, "verbose": True,
        "image": {"digest": "sha256:" + "a" * 64}, "imagePullSecrets": [{"name": "regcred"}],
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "podAnnotations": {"example.com/a": "b"}, "priorityClassName": "system-cluster-critical",
        "config": {"dnsNameservers": ["1.1.1.1"], "allowPrivateNetworks": True},
        "livenessProbe": {"enabled": False}, "podDisruptionBudget": {"enabled": False},
    },
}


def test_lint_strict(helm: str, tmp_path: Path) -> None:
    for name, values in SCENARIOS.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        result = subprocess.run([helm, "lint", "--strict", str(CHART), "-f", str(path)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


def validate_peering_object(obj: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    """kopf.dev objects are not in the Kubernetes schemas: check them against the chart's peering CRDs."""
    plural = obj["kind"].lower() + "s"
    (crd,) = find(objects, "CustomResourceDefinition", f"{plural}.kopf.dev")
    jsonschema.validate({k: v for k, v in obj.items() if k not in {"apiVersion", "kind", "metadata"}},
                        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    assert (crd["spec"]["scope"] == "Namespaced") == ("namespace" in obj["metadata"])


_VALIDATED: set[str] = set()


def validate_kubernetes(obj: dict[str, Any]) -> None:
    """kubernetes-validate (strict: unknown fields are errors) for each supported version, once per object."""
    key = json.dumps(obj, sort_keys=True)
    if key in _VALIDATED:
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)
    _VALIDATED.add(key)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_object_is_valid_kubernetes(render: Render, scenario: str) -> None:
    objects = render(SCENARIOS[scenario])
    assert objects
    for obj in objects:
        if obj["apiVersion"].startswith("kopf.dev/"):
            validate_peering_object(obj, objects)
            continue
        validate_kubernetes(obj)
        if not obj["metadata"]["name"].endswith(".keyplane.dev"):  # the generated CRDs keep their own labels
            labels = obj["metadata"].get("labels") or {}
            assert labels.get("app.kubernetes.io/instance") == RELEASE, obj["metadata"]["name"]


def test_included_crds_are_the_generated_ones(helm: str) -> None:
    out = helm_template(helm, "--include-crds").stdout
    rendered = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "CustomResourceDefinition"]
    by_name = {c["metadata"]["name"]: c for c in rendered}
    generated = {c["metadata"]["name"]: c for c in all_crds()}
    assert by_name == generated
    # and the checked-in copies are byte-identical to the repository's crds/
    for path in (CHART / "crds").glob("*.yaml"):
        assert path.read_text() == (CHART.parents[1] / "crds" / path.name).read_text()


def test_managed_crds_render_the_same_files_kept(render: Render) -> None:
    assert not find(render({}), "CustomResourceDefinition")
    managed = {c["metadata"]["name"]: c for c in find(render({"crds": {"managed": True}}), "CustomResourceDefinition")}
    generated = {c["metadata"]["name"]: c for c in all_crds()}
    assert set(managed) == set(generated)
    for name, crd in managed.items():
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert int(crd["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < 0
        stripped = copy.deepcopy(crd)
        del stripped["metadata"]["annotations"]
        assert stripped == generated[name]
    unkept = find(render({"crds": {"managed": True, "keep": False}}), "CustomResourceDefinition")
    assert all("helm.sh/resource-policy" not in c["metadata"]["annotations"] for c in unkept)


WRONG_VALUES = [
    ["--set", "replicaCount=abc"],
    ["--set", "replicaCount=2"],  # more than one standalone replica would double-process: use ha
    ["--set", "ha.enabled=yes"],
    ["--set", "ha.replicas=1"],
    ["--set", "config.roles=Admin"],
    ["--set", "config.metadataTimeout=soon"],
    ["--set", "config.metadataMaxBytes=12"],
    ["--set", "config.domainScope=Galaxy"],
    ["--set", "config.certificateExpiryWarning=30days"],
    ["--set", "config.allowInsecureHTTP=maybe"],
    ["--set", "watchNamespaces={Team_A}"],
    ["--set", "livenessProbe.port=http"],
    ["--set", "image.pullPolicy=Sometimes"],
    ["--set", "crds.managed=1"],
    ["--set", "unknownKey=1"],
]


@pytest.mark.parametrize("args", WRONG_VALUES, ids=[a[1] for a in WRONG_VALUES])
def test_schema_rejects_wrong_types(helm: str, args: list[str]) -> None:
    result = helm_template(helm, *args, check=False)
    assert result.returncode != 0
    assert "schema" in result.stderr


def pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o["spec"]["template"]["spec"] for o in objects if o["kind"] in {"Deployment", "StatefulSet"}]


@pytest.mark.parametrize("scenario", ["default", "ha"])
def test_restricted_pod_security(render: Render, scenario: str) -> None:
    (pod,) = pod_specs(render(SCENARIOS[scenario]))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532 and pod["securityContext"]["runAsUser"] == 65532
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # the only writable path is an emptyDir on /tmp
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert [v["name"] for v in pod["volumes"] if "emptyDir" in v] == ["tmp"]
    assert all(set(v) <= {"name", "emptyDir", "configMap", "secret", "projected"} for v in pod["volumes"])
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_default_is_one_recreated_replica_with_liveness(render: Render) -> None:
    objects = render({})
    deployment = workload(objects)
    assert deployment["kind"] == "Deployment"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    probe = container["livenessProbe"]["httpGet"]
    (port,) = [p for p in container["ports"] if p["name"] == probe["port"]]
    env = container_env(deployment)
    assert env["KEYPLANE_LIVENESS_ENDPOINT"] == f"http://0.0.0.0:{port['containerPort']}{probe['path']}"
    assert env["KEYPLANE_PEERING_NAME"] == ""
    assert not find(objects, "StatefulSet") and not find(objects, "NetworkPolicy")
    assert not [o for o in objects if o["apiVersion"].startswith("kopf.dev/")]
    (pdb,) = find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    (sa,) = find(objects, "ServiceAccount")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def resolve_env(env: dict[str, Any], pod: dict[str, Any]) -> dict[str, str]:
    """What the kubelet would give the container: downward-API fieldRefs resolved against a pod."""
    out = {}
    for name, value in env.items():
        if isinstance(value, dict):
            path = value["fieldRef"]["fieldPath"]
            if path == "metadata.name":
                out[name] = pod["metadata"]["name"]
            elif path.startswith("metadata.labels['"):
                out[name] = pod["metadata"]["labels"][path[len("metadata.labels['"):-2]]
            else:
                raise AssertionError(f"unexpected fieldRef {path}")
        else:
            out[name] = value
    return out


def test_ha_replicas_have_distinct_priorities(render: Render) -> None:
    objects = render(SCENARIOS["ha"])
    sts = workload(objects)
    assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 3
    (service,) = find(objects, "Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    env = container_env(sts)
    assert env["KEYPLANE_PEERING_NAME"] == "keyplane"
    priorities = set()
    for ordinal in range(sts["spec"]["replicas"]):
        # the StatefulSet controller names and labels each pod (apps.kubernetes.io/pod-index, Kubernetes >= 1.28)
        pod = {"metadata": {"name": f"{sts['metadata']['name']}-{ordinal}",
                            "labels": {"apps.kubernetes.io/pod-index": str(ordinal)}}}
        settings = load(environ=resolve_env(env, pod))
        assert settings.peering_name == "keyplane"
        priorities.add(settings.priority)
        assert resolve_env(env, pod)["POD_ID"] == pod["metadata"]["name"]  # Kopf's peer identity
    assert len(priorities) == 3
    # cluster-wide operators peer through a ClusterKopfPeering, created after its CRD (hook)
    (peering,) = find(objects, "ClusterKopfPeering", "keyplane")
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert {c["metadata"]["name"] for c in find(objects, "CustomResourceDefinition")} == {
        "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}


def test_ha_namespaced_peering_objects(render: Render) -> None:
    objects = render(SCENARIOS["ha-watch-namespaces"])
    peerings = find(objects, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert all("helm.sh/hook" not in p["metadata"]["annotations"] for p in peerings)
    assert not find(objects, "ClusterKopfPeering")


def test_every_setting_maps_to_an_env_var(render: Render) -> None:
    env = container_env(workload(render({})))
    names = {"KEYPLANE_" + name.upper() for name in Settings.model_fields}
    assert names <= set(env), names - set(env)
    # the chart's defaults are the operator's defaults, but for metrics: off in the binary, on in the chart
    chart = load(environ={k: v for k, v in env.items() if isinstance(v, str)})
    assert chart.metrics_endpoint == "http://0.0.0.0:8081/metrics"
    assert chart.model_copy(update={"metrics_endpoint": None}) == Settings()


def test_config_values_reach_the_operator(render: Render) -> None:
    config = {
        "defaultBaseURL": "https://sso.acme.example", "roles": ["Owner", "Editor"], "bundleSecretName": "idb",
        "allowPrivateNetworks": True, "allowInsecureHTTP": True, "metadataMaxBytes": 2097152,
        "metadataTimeout": 7.5, "metadataConnectTimeout": 2, "certificateExpiryWarning": "336h",
        "spCertificateValidity": "17520h", "spCertificateRenewBefore": "1440h", "domainScope": "Cluster",
        "bundleDebounce": 1.5, "bundleMaxDelay": 10, "resyncInterval": 60, "timerInterval": 30,
        "dnsNameservers": ["1.1.1.1", "9.9.9.9"],
    }
    objects = render({"config": config, "watchNamespaces": ["team-a", "team-b"], "livenessProbe": {"port": 9090}})
    env = container_env(workload(objects))
    settings = load(environ={k: v for k, v in env.items() if isinstance(v, str)})
    assert settings.default_base_url == "https://sso.acme.example"
    assert settings.roles == ("Owner", "Editor")
    assert settings.bundle_secret_name == "idb"
    assert settings.allow_private_networks and settings.allow_insecure_http
    assert settings.metadata_max_bytes == 2097152 and env["KEYPLANE_METADATA_MAX_BYTES"] == "2097152"
    assert (settings.metadata_timeout, settings.metadata_connect_timeout) == (7.5, 2.0)
    assert settings.certificate_expiry_warning.total_seconds() == 336 * 3600
    assert settings.sp_certificate_validity.total_seconds() == 17520 * 3600
    assert settings.sp_certificate_renew_before.total_seconds() == 1440 * 3600
    assert settings.domain_scope == "Cluster"
    assert (settings.bundle_debounce, settings.bundle_max_delay, settings.resync_interval) == (1.5, 10.0, 60.0)
    assert settings.timer_interval == 30.0
    assert settings.dns_nameservers == ("1.1.1.1", "9.9.9.9")
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.liveness_endpoint == "http://0.0.0.0:9090/healthz"


# ---- RBAC -------------------------------------------------------------------------------------------------

NAMESPACED_RULES = {
    ("keyplane.dev", "identityproviders"): {"list", "watch", "patch"},
    ("keyplane.dev", "ssodomains"): {"list", "watch", "patch"},
    ("keyplane.dev", "scimconnections"): {"list", "watch", "patch"},
    ("keyplane.dev", "identityproviders/status"): {"patch"},
    ("keyplane.dev", "ssodomains/status"): {"patch"},
    ("keyplane.dev", "scimconnections/status"): {"patch"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch", "delete"},  # sources; SP metadata
    ("", "secrets"): {"get", "create", "patch", "delete"},
    ("", "events"): {"create"},
    ("apps", "deployments"): {"list", "patch"},
}
# The shape of the chart's RBAC; that each verb is used by the operator (and no more is needed) is
# tested by running it under these rules: tests/integration/test_least_privilege.py.
CLUSTER_RULES = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
}
NAMESPACE_OBSERVATION = {("", "namespaces"): {"list", "watch"}}  # Kopf, only when watching listed namespaces
PEERING = {"list", "watch", "patch"}


def flatten(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs")
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert "*" not in group and "*" not in resource and "*" not in rule["verbs"]
                key = (group, resource)
                assert key not in out, f"{key} granted twice"
                out[key] = set(rule["verbs"])
    return out


def bound_to_service_account(objects: list[dict[str, Any]], binding: dict[str, Any]) -> None:
    (sa,) = find(objects, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": NAMESPACE}]


def test_cluster_rbac_is_exactly_what_the_operator_uses(render: Render) -> None:
    objects = render({})
    (role,) = find(objects, "ClusterRole")
    assert flatten(role["rules"]) == {**CLUSTER_RULES, **NAMESPACED_RULES}
    (binding,) = find(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    bound_to_service_account(objects, binding)
    assert not find(objects, "Role") and not find(objects, "RoleBinding")


def test_namespaced_rbac_per_watched_namespace(render: Render) -> None:
    objects = render(SCENARIOS["watch-namespaces"])
    (cluster_role,) = find(objects, "ClusterRole")
    assert flatten(cluster_role["rules"]) == {**CLUSTER_RULES, **NAMESPACE_OBSERVATION}  # no Secrets cluster-wide
    roles = find(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert flatten(role["rules"]) == NAMESPACED_RULES
    bindings = find(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        bound_to_service_account(objects, binding)
    (crb,) = find(objects, "ClusterRoleBinding")
    bound_to_service_account(objects, crb)
    assert container_env(workload(objects))["KEYPLANE_NAMESPACES"] == "team-a,team-b"


def test_ha_rbac_adds_only_peering(render: Render) -> None:
    (role,) = find(render(SCENARIOS["ha"]), "ClusterRole")
    assert flatten(role["rules"]) == {**CLUSTER_RULES, **NAMESPACED_RULES, ("kopf.dev", "clusterkopfpeerings"): PEERING}
    objects = render(SCENARIOS["ha-watch-namespaces"])
    for role in find(objects, "Role"):
        assert flatten(role["rules"]) == {**NAMESPACED_RULES, ("kopf.dev", "kopfpeerings"): PEERING}
    (cluster_role,) = find(objects, "ClusterRole")
    assert flatten(cluster_role["rules"]) == {**CLUSTER_RULES, **NAMESPACE_OBSERVATION}


def test_rbac_can_be_disabled(render: Render) -> None:
    objects = render({"rbac": {"create": False}})
    assert not [o for o in objects if o["apiVersion"].startswith("rbac.authorization.k8s.io/")]


# ---- NetworkPolicy, Argo CD --------------------------------------------------------------------------------

def test_network_policy_allows_only_dns_api_server_and_https(render: Render) -> None:
    objects = render(SCENARIOS["network-policy"])
    (policy,) = find(objects, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == workload(objects)["spec"]["selector"]["matchLabels"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    assert [p["port"] for rule in spec["ingress"] for p in rule["ports"]] == [8080, 8081]  # health, metrics
    ports = sorted({p["port"] for rule in spec["egress"] for p in rule["ports"]})
    assert ports == [53, 443, 6443, 8443]  # 8443 from extraEgress
    api = next(r for r in spec["egress"] if {p["port"] for p in r["ports"]} == {443, 6443})
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]


def test_argocd_health_configmap_carries_the_package_scripts(render: Render) -> None:
    assert not find(render({}), "ConfigMap")
    (cm,) = find(render(SCENARIOS["argocd-health"]), "ConfigMap")
    assert cm["metadata"]["namespace"] == "argocd"
    assert cm["metadata"]["labels"]["app.kubernetes.io/part-of"] == "argocd"
    assert cm["data"] == argocd_cm_entries()


def test_chart_copies_of_the_health_scripts_are_in_sync() -> None:
    copy = (CHART / "files" / "argocd-health.lua").read_text()
    assert dict.fromkeys(health_scripts(), copy) == health_scripts()


def test_notes_point_to_the_next_steps(helm: str) -> None:
    result = subprocess.run([helm, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    for text in ("kubectl get idp", "-o wide", "examples/okta-saml-scim", "config.defaultBaseURL", "-scim-token"):
        assert text in notes

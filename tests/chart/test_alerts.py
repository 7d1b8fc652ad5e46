"""The chart's monitoring: metrics Service, ServiceMonitor, PrometheusRule (checked and unit-tested with the
real promtool on exactly what the chart renders) and the Grafana dashboard (every query uses series that
Keyplane exports)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import missing

from .conftest import CHART, NAMESPACE, REPO, Render, container_env, find, workload

ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")
ALERTS = {"KeyplaneIdPCertificateExpiringSoon", "KeyplaneIdPCertificateExpiring", "KeyplaneIdPMetadataStale",
          "KeyplaneScimTokenRotationOverdue", "KeyplaneObjectNotReady", "KeyplaneBundleNearSecretLimit",
          "KeyplaneOperatorDown"}
MONITORING = {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
                          "prometheusRule": {"enabled": True}, "dashboard": {"enabled": True}}}


@pytest.fixture(scope="session")
def promtool() -> str:
    found = shutil.which("promtool") or str(REPO / ".tools" / "bin" / "promtool")
    if not os.access(found, os.X_OK):
        missing("promtool not found on PATH nor in .tools/bin (`make tools` takes it from Debian's prometheus)")
    return found


def exported_names() -> set[str]:
    """Every sample name the operator and keyplane.app can export (the names their registries reserve)."""
    from keyplane.app.metrics import AppMetrics
    from keyplane.metrics import OperatorMetrics, OperatorState

    operator = OperatorMetrics()
    operator.observe_state(lambda: OperatorState())
    names: set[str] = set()
    for registry in (operator.registry, AppMetrics().registry):
        for reserved in registry._collector_to_names.values():  # what register() derived from describe()
            names.update(reserved)
    return names


def referenced(expr: str) -> set[str]:
    return set(re.findall(r"\b(keyplane_[a-z0-9_]+|up)\b", expr)) - {"up"}


def rules(render: Render) -> dict[str, Any]:
    (rule,) = find(render(MONITORING), "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def test_promtool_checks_and_unit_tests_the_shipped_alerts(render: Render, promtool: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules(render)))
    shutil.copy(ALERT_TESTS, tmp_path / "alerts_test.yaml")
    checked = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout
    tested = subprocess.run([promtool, "test", "rules", "alerts_test.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_fires_on_a_case_and_stays_quiet_on_another(render: Render) -> None:
    shipped = {r["alert"] for g in rules(render)["groups"] for r in g["rules"]}
    assert shipped == ALERTS
    cases = [case for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    fires = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    # A quiet case may also be the healthy series next to a firing one in the same evaluation: promtool
    # compares the complete list of alerts, so any extra alert (a healthy object firing) fails the case.
    assert fires == ALERTS
    assert quiet | fires == ALERTS


def test_alerts_use_exported_series_and_severities(render: Render) -> None:
    names = exported_names()
    for group in rules(render)["groups"]:
        for rule in group["rules"]:
            assert referenced(rule["expr"]) <= names, rule["alert"]
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert "docs/operations.md" in rule["annotations"]["description"]


def test_alert_thresholds_follow_values(render: Render) -> None:
    values = {"metrics": {"prometheusRule": {"enabled": True, "certificateExpiryWarningDays": 30,
                                             "jobSelector": 'namespace="ops",service="kp"',
                                             "additionalLabels": {"team": "platform"}}}}
    (rule,) = find(render(values), "PrometheusRule")
    by_name = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "< 30 * 86400" in by_name["KeyplaneIdPCertificateExpiringSoon"]["expr"]
    assert by_name["KeyplaneOperatorDown"]["expr"] == 'absent(up{namespace="ops",service="kp"} == 1)'
    assert all(r["labels"]["team"] == "platform" for r in by_name.values())


def test_dashboard_queries_use_exported_series(render: Render) -> None:
    text = (CHART / "files" / "dashboard.json").read_text()
    dashboard = json.loads(text)
    names = exported_names()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = referenced(target["expr"])
            assert used, (panel["title"], target["expr"])
            assert used <= names, (panel["title"], used - names)
    # Every operator state series appears on the dashboard somewhere (nothing exported goes unseen).
    on_dashboard = set().union(*(referenced(e) for e in exprs))
    assert {"keyplane_objects", "keyplane_identityprovider_certificate_not_after_timestamp_seconds",
            "keyplane_identityprovider_metadata_last_success_timestamp_seconds",
            "keyplane_scimconnection_token_rotation_timestamp_seconds", "keyplane_api_requests_total",
            "keyplane_app_logins_total", "keyplane_app_scim_requests_total", "keyplane_bundle_bytes"} <= on_dashboard
    (configmap,) = [c for c in find(render(MONITORING), "ConfigMap") if c["metadata"]["name"].endswith("dashboard")]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["keyplane.json"]) == dashboard


def test_metrics_service_and_endpoint_by_default(render: Render) -> None:
    objects = render()
    (service,) = [s for s in find(objects, "Service") if s["metadata"]["name"] == "kp-keyplane-metrics"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}]
    pod = workload(objects)["spec"]["template"]
    assert all(pod["metadata"]["labels"][k] == v for k, v in service["spec"]["selector"].items())
    (container,) = pod["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert container_env(workload(objects))["KEYPLANE_METRICS_ENDPOINT"] == "http://0.0.0.0:8081/metrics"
    assert not find(objects, "ServiceMonitor") and not find(objects, "PrometheusRule")


def test_metrics_can_be_turned_off(render: Render) -> None:
    objects = render({"metrics": {"enabled": False}})
    assert not [s for s in find(objects, "Service") if s["metadata"]["name"].endswith("-metrics")]
    assert container_env(workload(objects))["KEYPLANE_METRICS_ENDPOINT"] == ""


def test_service_monitor_scrapes_the_metrics_service(render: Render) -> None:
    objects = render(MONITORING)
    (monitor,) = find(objects, "ServiceMonitor")
    (service,) = [s for s in find(objects, "Service") if s["metadata"]["name"] == "kp-keyplane-metrics"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    labels = service["metadata"]["labels"]
    assert all(labels[k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    # Only the metrics Service matches (not the HA headless one).
    ha = render({**MONITORING, "ha": {"enabled": True}})
    selected = [s for s in find(ha, "Service")
                if all((s["metadata"].get("labels") or {}).get(k) == v
                       for k, v in monitor["spec"]["selector"]["matchLabels"].items())]
    assert [s["metadata"]["name"] for s in selected] == ["kp-keyplane-metrics"]


def test_network_policy_lets_prometheus_in(render: Render) -> None:
    source = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    (policy,) = find(render({"networkPolicy": {"enabled": True, "metricsFrom": source}}), "NetworkPolicy")
    metrics = [rule for rule in policy["spec"]["ingress"] if rule["ports"][0]["port"] == 8081]
    assert metrics == [{"ports": [{"port": 8081, "protocol": "TCP"}], "from": source}]

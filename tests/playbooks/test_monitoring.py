"""The monitoring playbook and role in render mode: manifests, alert expressions against the proxy's real metrics, dashboards."""

from __future__ import annotations

import json
import urllib.request
from types import SimpleNamespace

import pytest

from tests.playbooks.conftest import exported_series, load_dir, promql_metrics, recap
from tests.support import k8s_schemas

MODEL_SERVERS = [
    {"runtime": "vllm", "namespace": "llm-hosting", "inference_services": ["granite-3-8b", "llama-3-8b"]},
    {"runtime": "openvino", "namespace": "ovms-models"},
]
EXPECTED = {
    "monitoring/proxy/servicemonitor.yaml": [("monitoring.coreos.com/v1", "ServiceMonitor", "litemaas-proxy")],
    "monitoring/proxy/prometheusrule.yaml": [("monitoring.coreos.com/v1", "PrometheusRule", "litemaas-proxy-alerts")],
    "monitoring/model-servers/servicemonitors.yaml": [("monitoring.coreos.com/v1", "ServiceMonitor", "litemaas-vllm-models"),
                                                      ("monitoring.coreos.com/v1", "ServiceMonitor", "litemaas-openvino-models")],
    "monitoring/model-servers/servicemonitor-dcgm.yaml": [("monitoring.coreos.com/v1", "ServiceMonitor", "litemaas-dcgm-exporter")],
    "monitoring/grafana/dashboards-configmap.yaml": [("v1", "ConfigMap", "litemaas-grafana-dashboards")],
    "monitoring/grafana/secret-grafana.yaml": [("v1", "Secret", "litemaas-grafana-admin")],
    "monitoring/grafana/grafana.yaml": [
        ("v1", "ServiceAccount", "litemaas-grafana"), ("v1", "Secret", "litemaas-grafana-token"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "litemaas-grafana-team-ai-cluster-monitoring-view"),
        ("v1", "ConfigMap", "litemaas-grafana-provisioning"), ("apps/v1", "Deployment", "litemaas-grafana"),
        ("v1", "Service", "litemaas-grafana"), ("route.openshift.io/v1", "Route", "litemaas-grafana")],
}
PLATFORM_SERIES = {"up", "kube_statefulset_status_replicas_ready", "kube_deployment_status_replicas_available"}


@pytest.fixture(scope="module")
def rendered(playbook, work_dir):
    out = work_dir / "render-monitoring"
    variables = {"ocp4_workload_litemaas_render_dir": str(out), "ocp4_workload_litemaas_namespace": "team-ai",
                 "ocp4_workload_litemaas_monitoring_model_servers": MODEL_SERVERS, "ocp4_workload_litemaas_monitoring_gpu_enabled": True}
    first = playbook.run("monitoring.yml", variables)
    second = playbook.run("monitoring.yml", variables)
    return SimpleNamespace(out=out, docs=load_dir(out), first=first, second=second, variables=variables)


def test_renders_the_expected_objects(rendered):
    docs = rendered.docs
    got = {path: [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in objs] for path, objs in docs.items()}
    assert got == EXPECTED
    for path, objs in docs.items():
        for obj in objs:
            if obj["kind"] not in ("ClusterRoleBinding",):
                assert obj["metadata"]["namespace"] in ("team-ai", "llm-hosting", "ovms-models", "nvidia-gpu-operator"), path
            assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "rhpds.litemaas"


def test_every_manifest_passes_its_api_servers_schema(rendered, operator_dir):
    """ServiceMonitor, PrometheusRule and GrafanaDashboard against their upstream CRDs, Route against its CRD and the
    OpenShift document, the built-in kinds against Kubernetes (tests/support/k8s_schemas.py)."""
    report = k8s_schemas.assert_valid(rendered.out, minimum=12)
    assert report.validators_of("ServiceMonitor") == {"crd servicemonitors.monitoring.coreos.com"}
    assert report.validators_of("PrometheusRule") == {"crd prometheusrules.monitoring.coreos.com"}
    assert report.validators_of("Route") == {"crd routes.route.openshift.io", "openshift-openapi"}
    report = k8s_schemas.assert_valid(operator_dir, minimum=6)
    assert report.validators_of("GrafanaDashboard") == {"crd grafanadashboards.grafana.integreatly.org"}


def test_rerender_is_unchanged(rendered):
    first, second = rendered.first, rendered.second
    assert recap(first.stdout)["changed"] > 0
    assert recap(second.stdout)["changed"] == 0


def test_never_touches_cluster_monitoring_config(rendered):
    docs = rendered.docs
    for objs in docs.values():
        for obj in objs:
            assert obj["metadata"]["name"] != "cluster-monitoring-config"
            assert obj["metadata"].get("namespace") not in ("openshift-monitoring", "openshift-user-workload-monitoring")


def test_proxy_servicemonitor_selects_the_deploy_roles_service(rendered):
    docs = rendered.docs
    sm = docs["monitoring/proxy/servicemonitor.yaml"][0]
    assert sm["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "litellm", "app.kubernetes.io/instance": "team-ai"}
    assert sm["spec"]["endpoints"][0]["port"] == "http" and sm["spec"]["endpoints"][0]["path"] == "/metrics"


def test_model_server_monitors_select_predictors(rendered):
    docs = rendered.docs
    vllm, ovms = docs["monitoring/model-servers/servicemonitors.yaml"]
    assert vllm["metadata"]["namespace"] == "llm-hosting"
    assert vllm["spec"]["selector"]["matchExpressions"][0] == {
        "key": "serving.kserve.io/inferenceservice", "operator": "In", "values": ["granite-3-8b", "llama-3-8b"]}
    assert ovms["spec"]["selector"]["matchExpressions"][0] == {"key": "serving.kserve.io/inferenceservice", "operator": "Exists"}
    dcgm = docs["monitoring/model-servers/servicemonitor-dcgm.yaml"][0]
    assert dcgm["spec"]["selector"]["matchLabels"] == {"app": "nvidia-dcgm-exporter"}


def _alerts(docs):
    return {r["alert"]: r for g in docs["monitoring/proxy/prometheusrule.yaml"][0]["spec"]["groups"] for r in g["rules"]}


def test_alerts_cover_the_required_conditions(rendered):
    docs = rendered.docs
    alerts = _alerts(docs)
    assert set(alerts) == {"LiteMaaSProxyDown", "LiteMaaSProxyHighErrorRate", "LiteMaaSProxyHighLatencyP99", "LiteMaaSUpstreamErrors",
                           "LiteMaaSModelDeploymentCoolingDown", "LiteMaaSRateLimitRejectionSpike", "LiteMaaSProxySpendBacklog",
                           "LiteMaaSDatabaseDown", "LiteMaaSRedisDown"}
    assert 'status_code=~"5.."' in alerts["LiteMaaSProxyHighErrorRate"]["expr"]
    assert "histogram_quantile(0.99" in alerts["LiteMaaSProxyHighLatencyP99"]["expr"]
    assert "litemaas_rate_limit_rejections_total" in alerts["LiteMaaSRateLimitRejectionSpike"]["expr"]
    assert "litellm_deployment_failure_responses_total" in alerts["LiteMaaSUpstreamErrors"]["expr"]
    assert 'statefulset="litellm-postgres"' in alerts["LiteMaaSDatabaseDown"]["expr"]
    assert 'deployment="litellm-redis"' in alerts["LiteMaaSRedisDown"]["expr"]
    for name, rule in alerts.items():
        assert 'namespace="team-ai"' in rule["expr"], name
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


def _proxy_series(proxy):
    # One request first, so that the labelled series exist too.
    proxy.request("POST", "/v1/chat/completions", {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}]},
                  headers={"Authorization": f"Bearer {proxy.master_key}"})
    with urllib.request.urlopen(proxy.url + "/metrics", timeout=30) as resp:
        return exported_series(resp.read().decode())


def test_alert_expressions_use_series_the_proxy_exports(rendered, proxy):
    docs = rendered.docs
    series = _proxy_series(proxy) | PLATFORM_SERIES
    for name, rule in _alerts(docs).items():
        used = promql_metrics(rule["expr"])
        assert used, name
        assert used <= series, f"{name} uses {sorted(used - series)}, which the proxy does not export"


DASHBOARD_PANELS = {
    "litemaas-proxy.json": {"Requests per second by model", "Request latency p50 / p95 / p99", "Tokens per second by model",
                            "Spend per hour by model (USD)", "Rate-limit rejections (429) by model", "Rejections by key (4xx)",
                            "Spend by key (USD, in range)", "Upstream errors by model and cause", "Deployments in cooldown",
                            "Time to first token through the proxy p50 / p95"},
    "litemaas-vllm.json": {"Time to first token p50 / p95", "Inter-token latency p50 / p95", "Running and waiting requests", "KV-cache use"},
    "litemaas-gpu.json": {"GPU utilisation", "GPU memory used", "GPU temperature", "Power draw"},
}


def test_dashboards_are_valid_json_with_the_panels(rendered, proxy):
    docs = rendered.docs
    cm = docs["monitoring/grafana/dashboards-configmap.yaml"][0]
    assert set(cm["data"]) == set(DASHBOARD_PANELS)
    series = _proxy_series(proxy)
    for name, text in cm["data"].items():
        board = json.loads(text)
        titles = {p["title"] for p in board["panels"]}
        assert DASHBOARD_PANELS[name] <= titles, name
        assert board["uid"] == name[:-5]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
                if name == "litemaas-proxy.json":
                    used = promql_metrics(target["expr"])
                    assert used <= series, f"{panel['title']}: {sorted(used - series)} not exported by the proxy"
                if name == "litemaas-vllm.json":
                    assert all(m.startswith(("vllm:", "ovms_")) for m in promql_metrics(target["expr"])), target["expr"]
                if name == "litemaas-gpu.json":
                    assert all(m.startswith("DCGM_FI_") for m in promql_metrics(target["expr"])), target["expr"]


def test_grafana_deployment_is_restricted_and_provisioned(rendered):
    docs = rendered.docs
    objs = {d["kind"]: d for d in docs["monitoring/grafana/grafana.yaml"]}
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["envFrom"] == [{"secretRef": {"name": "litemaas-grafana-admin"}}]
    datasources = objs["ConfigMap"]["data"]["datasources.yaml"]
    assert "thanos-querier.openshift-monitoring.svc" in datasources
    assert objs["ClusterRoleBinding"]["roleRef"]["name"] == "cluster-monitoring-view"
    assert objs["Route"]["spec"]["tls"]["termination"] == "edge"


def test_admin_password_is_generated_once_and_kept(rendered):
    out, docs = rendered.out, rendered.docs
    secret = docs["monitoring/grafana/secret-grafana.yaml"][0]
    password = secret["stringData"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert len(password) == 32
    assert (out / "monitoring/grafana/secret-grafana.yaml").stat().st_mode & 0o777 == 0o600
    assert password in (out / ".litemaas-monitoring-secrets").read_text()


@pytest.fixture(scope="module")
def operator_dir(playbook, work_dir):
    out = work_dir / "render-monitoring-operator"
    playbook.run("monitoring.yml", {"ocp4_workload_litemaas_render_dir": str(out), "ocp4_workload_litemaas_monitoring_grafana_mode": "operator"})
    return out


def test_operator_mode_renders_grafanadashboards_and_no_grafana(operator_dir):
    docs = load_dir(operator_dir)
    assert sorted(docs) == ["monitoring/grafana/dashboards-configmap.yaml", "monitoring/grafana/grafanadashboards.yaml",
                            "monitoring/proxy/prometheusrule.yaml", "monitoring/proxy/servicemonitor.yaml"]
    boards = docs["monitoring/grafana/grafanadashboards.yaml"]
    assert [(b["apiVersion"], b["kind"]) for b in boards] == [("grafana.integreatly.org/v1beta1", "GrafanaDashboard")] * 3
    assert all(json.loads(b["spec"]["json"])["panels"] for b in boards)
    assert boards[0]["spec"]["instanceSelector"] == {"matchLabels": {"dashboards": "litemaas"}}


def test_destroy_in_render_mode_removes_the_manifests(playbook, operator_dir):
    assert (operator_dir / "monitoring/proxy/servicemonitor.yaml").exists()
    playbook.run("monitoring.yml", {"ocp4_workload_litemaas_render_dir": str(operator_dir), "ocp4_workload_litemaas_monitoring_action": "destroy"})
    assert not (operator_dir / "monitoring").exists()


def test_bad_model_server_entry_is_refused(playbook, render_dir):
    proc = playbook.run("monitoring.yml", {"ocp4_workload_litemaas_render_dir": str(render_dir),
                                           "ocp4_workload_litemaas_monitoring_model_servers": [{"runtime": "tgi", "namespace": "x"}]}, expect_rc=2)
    assert "value of runtime must be one of: vllm, openvino, got: tgi" in proc.stdout


def test_switching_grafana_mode_prunes_the_stale_manifests(playbook, render_dir):
    """The manifest pipeline removes files that are no longer rendered: deploy mode's Grafana after switching to operator mode,
    the model-server monitors after the list is emptied. Check mode reports and changes nothing."""
    base = {"ocp4_workload_litemaas_render_dir": str(render_dir), "ocp4_workload_litemaas_monitoring_model_servers": MODEL_SERVERS}
    playbook.run("monitoring.yml", dict(base, ocp4_workload_litemaas_monitoring_grafana_mode="deploy"))
    assert (render_dir / "monitoring/grafana/grafana.yaml").exists()
    switched = dict(base, ocp4_workload_litemaas_monitoring_grafana_mode="operator", ocp4_workload_litemaas_monitoring_model_servers=[])
    check = playbook.run("monitoring.yml", switched, check=True)
    assert "would remove: 3" in check.stdout, check.stdout[-3000:]
    assert (render_dir / "monitoring/grafana/grafana.yaml").exists()
    playbook.run("monitoring.yml", switched)
    assert sorted(load_dir(render_dir)) == ["monitoring/grafana/dashboards-configmap.yaml", "monitoring/grafana/grafanadashboards.yaml",
                                            "monitoring/proxy/prometheusrule.yaml", "monitoring/proxy/servicemonitor.yaml"]
    k8s_schemas.assert_valid(render_dir, minimum=6)

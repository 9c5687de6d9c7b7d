"""The rendered PrometheusRule against the real promtool (Debian's prometheus package): the rules load, and a unit test
for every alert shows it firing, with one label set, and staying quiet."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.playbooks.conftest import load_dir

NS = "team-ai"
SEL = f'namespace="{NS}"'
EXTRA = {"team": "ai"}
LABELS = {"namespace": NS, **EXTRA}


def _alert(severity: str, **labels) -> dict:
    return {"exp_labels": {"severity": severity, **LABELS, **labels}}


# (alert, description, input series, evaluated at, expected alerts); series values in promtool's notation, 1 sample a minute.
CASES = [
    ("LiteMaaSProxyDown", "every target down", [(f'up{{{SEL}, job="litellm", instance="a"}}', "0x15")], "10m", [_alert("critical")]),
    ("LiteMaaSProxyDown", "no target at all: the same labels", [('up{namespace="other", job="litellm"}', "1x15")], "10m",
     [_alert("critical")]),
    ("LiteMaaSProxyDown", "one of two targets up", [(f'up{{{SEL}, job="litellm", instance="a"}}', "0x15"),
                                                    (f'up{{{SEL}, job="litellm", instance="b"}}', "1x15")], "10m", []),
    ("LiteMaaSProxyHighErrorRate", "half the answers 5xx",
     [(f'litellm_proxy_total_requests_metric_total{{{SEL}, status_code="503"}}', "0+60x15"),
      (f'litellm_proxy_total_requests_metric_total{{{SEL}, status_code="200"}}', "0+60x15")], "12m", [_alert("warning")]),
    ("LiteMaaSProxyHighErrorRate", "one 5xx in 600",
     [(f'litellm_proxy_total_requests_metric_total{{{SEL}, status_code="503"}}', "0+1x15"),
      (f'litellm_proxy_total_requests_metric_total{{{SEL}, status_code="200"}}', "0+600x15")], "12m", []),
    ("LiteMaaSProxyHighLatencyP99", "every request between 30 and 60 s",
     [(f'litellm_request_total_latency_metric_bucket{{{SEL}, model="m", le="10.0"}}', "0x15"),
      (f'litellm_request_total_latency_metric_bucket{{{SEL}, model="m", le="30.0"}}', "0x15"),
      (f'litellm_request_total_latency_metric_bucket{{{SEL}, model="m", le="60.0"}}', "0+60x15"),
      (f'litellm_request_total_latency_metric_bucket{{{SEL}, model="m", le="+Inf"}}', "0+60x15")], "12m", [_alert("warning")]),
    ("LiteMaaSProxyHighLatencyP99", "every request under 10 s",
     [(f'litellm_request_total_latency_metric_bucket{{{SEL}, model="m", le="10.0"}}', "0+60x15"),
      (f'litellm_request_total_latency_metric_bucket{{{SEL}, model="m", le="+Inf"}}', "0+60x15")], "12m", []),
    ("LiteMaaSUpstreamErrors", "1 failure a second",
     [(f'litellm_deployment_failure_responses_total{{{SEL}, model_group="granite", exception_status="503"}}', "0+60x15")], "12m",
     [_alert("warning", model_group="granite")]),
    ("LiteMaaSUpstreamErrors", "1 failure in 10 s",
     [(f'litellm_deployment_failure_responses_total{{{SEL}, model_group="granite", exception_status="503"}}', "0+6x15")], "12m", []),
    ("LiteMaaSModelDeploymentCoolingDown", "cooling down for 15 min",
     [(f'litellm_deployment_state{{{SEL}, model_group="granite", model_id="g1", api_base="http://g1/v1"}}', "2x15")], "10m",
     [_alert("warning", model_group="granite", api_base="http://g1/v1")]),
    ("LiteMaaSModelDeploymentCoolingDown", "healthy",
     [(f'litellm_deployment_state{{{SEL}, model_group="granite", model_id="g1", api_base="http://g1/v1"}}', "0x15")], "10m", []),
    ("LiteMaaSRateLimitRejectionSpike", "5 rejections a second",
     [(f'litemaas_rate_limit_rejections_total{{{SEL}, requested_model="m", subject="api_key", limit_type="requests"}}', "0+300x15")],
     "10m", [_alert("warning")]),
    ("LiteMaaSRateLimitRejectionSpike", "1 rejection a second",
     [(f'litemaas_rate_limit_rejections_total{{{SEL}, requested_model="m", subject="api_key", limit_type="requests"}}', "0+60x15")],
     "10m", []),
    ("LiteMaaSProxySpendBacklog", "a live replica holds 1500 records",
     [(f'litellm_in_memory_spend_update_queue_size{{{SEL}, pod="a"}}', "1500x15"),
      (f'litellm_in_memory_spend_update_queue_size{{{SEL}, pod="b"}}', "0x15")], "10m", [_alert("critical")]),
    ("LiteMaaSProxySpendBacklog", "the replica holding 1500 records died 9 min ago",
     [(f'litellm_in_memory_spend_update_queue_size{{{SEL}, pod="a"}}', "1500x5 stale"),
      (f'litellm_in_memory_spend_update_queue_size{{{SEL}, pod="b"}}', "0x15")], "15m", [_alert("critical")]),
    ("LiteMaaSProxySpendBacklog", "a replica that died with an empty queue",
     [(f'litellm_in_memory_spend_update_queue_size{{{SEL}, pod="a"}}', "1500 0x4 stale"),
      (f'litellm_in_memory_spend_update_queue_size{{{SEL}, pod="b"}}', "0x15")], "15m", []),
    ("LiteMaaSProxySpendBacklog", "the dead replica's backlog is over an hour old",
     [(f'litellm_in_memory_spend_update_queue_size{{{SEL}, pod="a"}}', "1500x5 stale"),
      (f'litellm_in_memory_spend_update_queue_size{{{SEL}, pod="b"}}', "0x80")], "75m", []),
    ("LiteMaaSDatabaseDown", "no ready replica",
     [(f'kube_statefulset_status_replicas_ready{{{SEL}, statefulset="litellm-postgres"}}', "0x15")], "10m", [_alert("critical")]),
    ("LiteMaaSDatabaseDown", "StatefulSet gone: the same labels",
     [(f'kube_statefulset_status_replicas_ready{{{SEL}, statefulset="other"}}', "1x15")], "10m", [_alert("critical")]),
    ("LiteMaaSDatabaseDown", "ready",
     [(f'kube_statefulset_status_replicas_ready{{{SEL}, statefulset="litellm-postgres"}}', "1x15")], "10m", []),
    ("LiteMaaSRedisDown", "no available replica",
     [(f'kube_deployment_status_replicas_available{{{SEL}, deployment="litellm-redis"}}', "0x15")], "10m", [_alert("critical")]),
    ("LiteMaaSRedisDown", "Deployment gone: the same labels",
     [(f'kube_deployment_status_replicas_available{{{SEL}, deployment="other"}}', "1x15")], "10m", [_alert("critical")]),
    ("LiteMaaSRedisDown", "available",
     [(f'kube_deployment_status_replicas_available{{{SEL}, deployment="litellm-redis"}}', "1x15")], "10m", []),
]


@pytest.fixture(scope="module")
def rule_file(playbook, work_dir):
    assert shutil.which("promtool"), "promtool missing: scripts/lib.sh installs Debian's prometheus package"
    out = work_dir / "render-alert-rules"
    playbook.run("monitoring.yml", {"ocp4_workload_litemaas_render_dir": str(out), "ocp4_workload_litemaas_namespace": NS,
                                    "ocp4_workload_litemaas_monitoring_alert_labels": EXTRA})
    rules = [d for objs in load_dir(out).values() for d in objs if d["kind"] == "PrometheusRule"]
    assert [r["metadata"]["name"] for r in rules] == ["litemaas-proxy-alerts"]
    path = out / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rules[0]["spec"]["groups"]}, sort_keys=False))
    return path


def _promtool(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True, check=False, timeout=120)


def test_promtool_check_rules_accepts_the_rendered_rules(rule_file):
    proc = _promtool("check", "rules", rule_file)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 9 rules found" in proc.stdout


def test_every_alert_has_a_firing_and_a_quiet_case(rule_file):
    alerts = {r["alert"] for g in yaml.safe_load(rule_file.read_text())["groups"] for r in g["rules"]}
    assert len(alerts) == 9
    assert {c[0] for c in CASES if c[4]} == alerts
    assert {c[0] for c in CASES if not c[4]} == alerts


def test_promtool_unit_tests_of_every_alert(rule_file):
    """Each case is its own promtool test; the expected alerts are compared on their labels only (annotations hold
    $value templates)."""
    rules = yaml.safe_load(rule_file.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    bare = rule_file.with_name("rules-bare.yaml")
    bare.write_text(yaml.safe_dump(rules, sort_keys=False))
    tests = []
    for alert, what, series, at, expected in CASES:
        tests.append({"name": f"{alert}: {what}", "interval": "1m",
                      "input_series": [{"series": s, "values": v} for s, v in series],
                      "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}]})
    unit = rule_file.with_name("rules-test.yaml")
    unit.write_text(yaml.safe_dump({"rule_files": [bare.name], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    proc = _promtool("test", "rules", unit)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr

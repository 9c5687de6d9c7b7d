"""The model-server and GPU dashboards against today's exporters: every metric name they read is in
docs/exporter-metrics.yaml (old names only as the fallback of their replacement), and promtool evaluates the
queries that must work on both old and new servers, and on both label shapes of the DCGM exporter."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from tests.playbooks.conftest import REPO, promql_metrics

BOARDS = REPO / "roles/ocp4_workload_litemaas_monitoring/files/dashboards"
EXPORTERS = yaml.safe_load((REPO / "docs/exporter-metrics.yaml").read_text())
PREFIX = {"vllm": "vllm:", "openvino": "ovms_", "dcgm": "DCGM_FI_"}


def _exprs(board: str) -> dict:
    data = json.loads((BOARDS / board).read_text())
    return {f"{p['title']} {t['refId']}": t["expr"] for p in data["panels"] for t in p.get("targets", [])}


def _concrete(expr: str) -> str:
    """A dashboard query as Grafana sends it with every variable on "All"."""
    for var, value in (("$__rate_interval", "5m"), ("$namespace", ".*"), ("$model_name", ".*"), ("$node", ".*")):
        expr = expr.replace(var, value)
    return expr


@pytest.mark.parametrize("board", ["litemaas-vllm.json", "litemaas-gpu.json"])
def test_dashboards_use_current_exporter_metric_names(board):
    current = {m for e in EXPORTERS.values() for m in e["metrics"]}
    legacy = {old: spec["replaced_by"] for e in EXPORTERS.values() for old, spec in (e["legacy"] or {}).items()}
    for title, expr in _exprs(board).items():
        used = promql_metrics(expr)
        assert used, title
        for name in used:
            assert name in current or name in legacy, f"{title}: {name} is not a metric of the exporters in docs/exporter-metrics.yaml"
            if name in legacy:
                assert legacy[name] in used and " or " in expr, f"{title}: {name} is only a fallback of {legacy[name]}"


def test_namespace_variable_lists_openvino_only_namespaces():
    board = json.loads((BOARDS / "litemaas-vllm.json").read_text())
    query = next(v for v in board["templating"]["list"] if v["name"] == "namespace")["definition"]
    assert "vllm:num_requests_running" in query and "ovms_current_requests" in query and "ovms_current_graphs" in query


def _series(name: str, labels: dict, values: str) -> dict:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


VLLM = _exprs("litemaas-vllm.json")
GPU = _exprs("litemaas-gpu.json")
M = {"namespace": "llm-hosting", "model_name": "granite", "pod": "granite-predictor-1"}
EXPORTER_POD = {"namespace": "nvidia-gpu-operator", "pod": "nvidia-dcgm-exporter-abcde", "Hostname": "node-1"}
CASES = [
    ("KV cache, vLLM >= 0.12", VLLM["KV-cache use A"], [_series("vllm:kv_cache_usage_perc", M, "0.25x10")],
     [{"labels": '{model_name="granite", pod="granite-predictor-1"}', "value": 0.25}]),
    ("KV cache, vLLM < 0.9.2", VLLM["KV-cache use A"], [_series("vllm:gpu_cache_usage_perc", M, "0.5x10")],
     [{"labels": '{model_name="granite", pod="granite-predictor-1"}', "value": 0.5}]),
    ("KV cache, both names: the current one", VLLM["KV-cache use A"],
     [_series("vllm:kv_cache_usage_perc", M, "0.25x10"), _series("vllm:gpu_cache_usage_perc", M, "0.5x10")],
     [{"labels": '{model_name="granite", pod="granite-predictor-1"}', "value": 0.25}]),
    ("OpenVINO LLM graph requests", VLLM["OpenVINO requests per second A"],
     [_series("ovms_requests_accepted", {"namespace": "ovms", "name": "llm", "api": "V3", "interface": "REST", "method": "Unary"}, "0+60x10")],
     [{"labels": '{name="llm"}', "value": 1}]),
    ("Pods on GPUs, honorLabels (the role's ServiceMonitor)", GPU["Pods on GPUs A"],
     [_series("DCGM_FI_DEV_GPU_UTIL", {"namespace": "llm-hosting", "pod": "granite-predictor-1", "Hostname": "node-1", "gpu": "0"}, "90x10"),
      _series("DCGM_FI_DEV_GPU_UTIL", {**EXPORTER_POD, "gpu": "1"}, "0x10")],
     [{"labels": '{namespace="llm-hosting", pod="granite-predictor-1"}', "value": 1}]),
    ("Pods on GPUs, exported_ labels (scraped without honorLabels)", GPU["Pods on GPUs A"],
     [_series("DCGM_FI_DEV_GPU_UTIL", {**EXPORTER_POD, "gpu": "0", "exported_pod": "granite-predictor-1",
                                       "exported_namespace": "llm-hosting"}, "90x10"),
      _series("DCGM_FI_DEV_GPU_UTIL", {**EXPORTER_POD, "gpu": "1", "exported_pod": "granite-predictor-1",
                                       "exported_namespace": "llm-hosting"}, "90x10"),
      _series("DCGM_FI_DEV_GPU_UTIL", {**EXPORTER_POD, "gpu": "2"}, "0x10")],
     [{"labels": '{namespace="llm-hosting", pod="granite-predictor-1"}', "value": 2}]),
]


def test_dashboard_queries_with_promtool(tmp_path):
    assert shutil.which("promtool"), "promtool missing: scripts/lib.sh installs Debian's prometheus package"
    (tmp_path / "none.yaml").write_text("groups: []\n")
    tests = [{"name": name, "interval": "1m", "input_series": series,
              "promql_expr_test": [{"expr": _concrete(expr), "eval_time": "8m", "exp_samples": expected}]}
             for name, expr, series, expected in CASES]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump({"rule_files": ["none.yaml"], "tests": tests}, sort_keys=False))
    proc = subprocess.run(["promtool", "test", "rules", str(tmp_path / "test.yaml")], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr

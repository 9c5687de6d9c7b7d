"""bench/load.py end to end with a short run: it starts its own services and two proxies, drives load, and its
spend check (client usage == recorded spend, per key and in total) passes. This tests the script, not speed."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_load_script_reports_spend_equal_to_client_usage(tmp_path):
    out = tmp_path / "load.json"
    res = subprocess.run([sys.executable, str(REPO / "bench" / "load.py"), "--duration", "5", "--concurrency", "8", "--keys", "20",
                          "--json", str(out)], cwd=str(REPO), capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PASS" in res.stdout.splitlines()[-1]
    data = json.loads(out.read_text())
    assert data["passed"] and data["spend_equal"] and data["proxies"] == 2 and data["keys"] == 20
    assert data["status_counts"].get("200", 0) > 0
    # Every 10th key has a low RPM limit: 429s happen, and they are not charged (the spend check above covers that).
    assert data["status_counts"].get("429", 0) > 0
    tot = data["totals"]
    assert tot["client_requests"] == tot["db_requests"] == data["status_counts"]["200"]
    assert tot["client_prompt"] == tot["db_prompt"] and tot["client_completion"] == tot["db_completion"]
    assert data["proxy_exit_codes"] == [0, 0]


def test_load_script_spend_is_exact_across_workers_of_one_proxy(tmp_path):
    """Two worker processes share one port: limits (Redis) and spend (each worker's own buffer) stay exact."""
    out = tmp_path / "load.json"
    res = subprocess.run([sys.executable, str(REPO / "bench" / "load.py"), "--duration", "5", "--concurrency", "8", "--keys", "20",
                          "--proxies", "1", "--workers", "2", "--json", str(out)], cwd=str(REPO), capture_output=True, text=True, timeout=300,
                         check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(out.read_text())
    assert data["passed"] and data["spend_equal"] and data["proxies"] == 1 and data["workers"] == 2
    assert data["status_counts"].get("429", 0) > 0
    tot = data["totals"]
    assert tot["client_requests"] == tot["db_requests"] == data["status_counts"]["200"]
    assert tot["client_prompt"] == tot["db_prompt"] and tot["client_completion"] == tot["db_completion"]
    assert data["proxy_exit_codes"] == [0]


def test_load_script_fails_on_bad_arguments():
    res = subprocess.run([sys.executable, str(REPO / "bench" / "load.py"), "--keys", "0"], cwd=str(REPO), capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 2 and "--keys" in res.stderr


def test_spend_comparison_catches_a_single_token():
    """The check the script's PASS rests on notices one token missing, one extra row and a wrong key spend."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_load", REPO / "bench" / "load.py")
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    keys = ["sk-a", "sk-b"]
    tally = load.Tally()
    tally.success("sk-a", {"prompt_tokens": 3, "completion_tokens": 5})
    tally.success("sk-b", {"prompt_tokens": 2, "completion_tokens": 1})
    cost = {k: p * load.INPUT_COST + c * load.OUTPUT_COST for k, p, c in (("sk-a", 3, 5), ("sk-b", 2, 1))}
    logs = {load.token_hash("sk-a"): (1, 3, 5), load.token_hash("sk-b"): (1, 2, 1)}
    spend = {load.token_hash(k): v for k, v in cost.items()}
    assert load.compare(keys, tally, logs, spend)[0] == []
    assert len(load.compare(keys, tally, {**logs, load.token_hash("sk-b"): (1, 2, 0)}, spend)[0]) == 1
    assert len(load.compare(keys, tally, logs, {**spend, load.token_hash("sk-a"): cost["sk-a"] + load.INPUT_COST})[0]) == 1
    assert len(load.compare(keys, tally, {**logs, load.token_hash("sk-c"): (1, 1, 1)}, spend)[0]) == 1

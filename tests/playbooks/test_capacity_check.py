"""capacity_check: the module against the stub model server and the playbook through the real proxy."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from tests.playbooks.conftest import recap


@pytest.fixture(scope="module")
def cc(collections_path):
    """The module, imported as the collection's (it imports the collection's proxy client)."""
    if str(collections_path) not in sys.path:
        sys.path.insert(0, str(collections_path))
    return importlib.import_module("ansible_collections.rhpds.litemaas.plugins.modules.capacity_check")


@pytest.mark.parametrize("values, pct, expected", [([], 50, None), ([3.0], 95, 3.0), ([1, 2, 3, 4], 50, 2.5), ([1, 2, 3, 4, 5], 95, 4.8),
                                                   ([5, 1, 3], 0, 1), ([5, 1, 3], 100, 5)])
def test_percentile(cc, values, pct, expected):
    assert cc.percentile(values, pct) == pytest.approx(expected) if expected is not None else cc.percentile(values, pct) is None


def _summary(requests, errors, p50, p95):
    return {"requests": requests, "error_rate": errors / requests if requests else 0.0, "ttft_seconds": {"p50": p50, "p95": p95}}


@pytest.mark.parametrize("summary, p50_limit, passed, failure", [
    (_summary(10, 0, 0.2, 0.4), None, True, None),
    (_summary(10, 0, 0.2, 0.6), None, False, "TTFT p95 0.600 s is above 0.500 s"),
    (_summary(10, 0, 0.3, 0.4), 0.25, False, "TTFT p50 0.300 s is above 0.250 s"),
    (_summary(100, 2, 0.2, 0.4), None, False, "error rate 2.0% is above 1.0%"),
    (_summary(10, 10, None, None), None, False, "no request succeeded"),
    (_summary(0, 0, None, None), None, False, "no request was sent"),
])
def test_judge(cc, summary, p50_limit, passed, failure):
    ok, failures = cc.judge(summary, 0.5, p50_limit, 0.01)
    assert ok is passed
    if failure:
        assert any(f.startswith(failure) for f in failures), failures


def _task(playbook, tmp_path, args: dict, check=False, expect_rc=0):
    play = [{"name": "capacity", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Run the capacity check", "rhpds.litemaas.capacity_check": args, "register": "result"},
        {"name": "Save the result", "check_mode": False,
         "ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": str(tmp_path / "result.json"), "mode": "0600"}},
    ]}]
    path = tmp_path / "play.yml"
    path.write_text(json.dumps(play))
    proc = playbook.run_file(path, check=check, expect_rc=expect_rc)
    return proc, (json.loads((tmp_path / "result.json").read_text()) if (tmp_path / "result.json").exists() else None)


def test_module_against_the_stub_passes_and_measures(playbook, stub_upstream, tmp_path):
    stub_upstream.reset()
    proc, result = _task(playbook, tmp_path, {"api_url": stub_upstream.url, "api_keys": ["sk-a", "sk-b"], "model": "stub-model", "attendees": 6,
                                              "requests_per_attendee": 2, "ttft_p95_threshold": 600, "max_tokens": 8})
    check = result["capacity_check"]
    assert result["passed"] is True and result["changed"] is False
    assert (check["requests"], check["successes"], check["errors"]) == (12, 12, 0)
    assert check["completion_tokens"] == 12 * 8  # the stub answers max_tokens words and reports usage
    ttft, latency = check["ttft_seconds"], check["latency_seconds"]
    assert 0 < ttft["min"] <= ttft["p50"] <= ttft["p95"] <= ttft["max"]
    assert ttft["p95"] <= latency["max"]
    assert check["inter_token_seconds"]["p50"] is not None
    assert result["msg"].startswith("PASS: 12 requests by 6 attendees to stub-model")
    assert stub_upstream.stats()["by_model"]["stub-model"] == 12
    assert "sk-a" not in proc.stdout and "sk-b" not in proc.stdout


def test_module_reports_upstream_errors_and_fails_the_check(playbook, stub_upstream, tmp_path):
    proc, result = _task(playbook, tmp_path, {"api_url": stub_upstream.base_url, "api_keys": ["sk-a"], "model": "stub-fail-503", "attendees": 3,
                                              "requests_per_attendee": 2, "ttft_p95_threshold": 600, "stream": True})
    check = result["capacity_check"]
    assert result["passed"] is False
    assert check["errors_by_kind"] == {"http_503": 6}
    assert check["error_rate"] == 1.0
    assert "error rate 100.0% is above 1.0%" in result["msg"]


def test_module_fail_on_threshold_fails_the_task(playbook, stub_upstream, tmp_path):
    proc, dummy = _task(playbook, tmp_path, {"api_url": stub_upstream.url, "api_keys": ["sk-a"], "model": "stub-model", "attendees": 2,
                                             "requests_per_attendee": 1, "ttft_p95_threshold": 0, "fail_on_threshold": True}, expect_rc=2)
    assert "FAIL: 2 requests by 2 attendees to stub-model" in proc.stdout
    assert "is above 0.000 s" in proc.stdout


def test_module_check_mode_sends_nothing(playbook, stub_upstream, tmp_path):
    stub_upstream.reset()
    dummy, result = _task(playbook, tmp_path, {"api_url": stub_upstream.url, "api_keys": ["sk-a"], "model": "stub-model", "attendees": 4}, check=True)
    assert result["capacity_check"]["skipped"] is True and result["passed"] is False
    assert "would send 12 requests by 4 attendees" in result["msg"]
    assert stub_upstream.stats()["requests"] == 0


def test_module_rejects_bad_input(playbook, tmp_path):
    proc, dummy = _task(playbook, tmp_path, {"api_url": "ftp://x", "api_keys": ["k"], "model": "m"}, expect_rc=2)
    assert "api_url must be an http:// or https:// URL, got 'ftp://x'" in proc.stdout
    proc, dummy = _task(playbook, tmp_path, {"api_url": "http://127.0.0.1:1", "api_keys": ["k"], "model": "m", "attendees": 0}, expect_rc=2)
    assert "attendees must be at least 1, got 0" in proc.stdout


def test_module_with_the_master_key_refuses_a_model_the_proxy_does_not_serve(playbook, proxy, tmp_path):
    """With api_key, the proxy client reads /model/info first: an unknown model fails before any chat request."""
    proc, dummy = _task(playbook, tmp_path, {"api_url": proxy.url, "api_key": proxy.master_key, "api_keys": ["sk-unused"],
                                             "model": "no-such-model", "attendees": 2}, expect_rc=2)
    assert "model 'no-such-model' is not served by the proxy; it serves:" in proc.stdout
    assert "stub-model" in proc.stdout.split("it serves:", 1)[1]
    assert proxy.master_key not in proc.stdout


def test_module_takes_its_connection_from_the_action_group_defaults(playbook, proxy, tmp_path):
    """module_defaults for group/rhpds.litemaas.litemaas reach capacity_check (api_url and the master key)."""
    play = [{"name": "capacity", "hosts": "localhost", "gather_facts": False,
             "module_defaults": {"group/rhpds.litemaas.litemaas": {"api_url": proxy.url, "api_key": proxy.master_key}},
             "tasks": [
                 {"name": "Create a key", "rhpds.litemaas.virtual_key": {"key_alias": "capacity-group-defaults", "models": ["stub-model"]},
                  "register": "k", "no_log": True},
                 {"name": "Run the capacity check", "rhpds.litemaas.capacity_check": {
                     "api_keys": ["{{ k.key }}"], "model": "stub-model", "attendees": 2, "requests_per_attendee": 1, "ttft_p95_threshold": 600},
                  "register": "result"},
                 {"name": "Remove the key", "rhpds.litemaas.virtual_key": {"key_alias": "capacity-group-defaults", "state": "absent"}},
                 {"name": "Show", "ansible.builtin.debug": {"msg": "RESULT {{ result.msg }}"}},
             ]}]
    path = tmp_path / "group.yml"
    path.write_text(json.dumps(play))
    proc = playbook.run_file(path)
    assert "RESULT PASS: 2 requests by 2 attendees to stub-model" in proc.stdout


def test_playbook_through_the_proxy_with_temporary_keys(playbook, proxy):
    proc = playbook.run("capacity_check.yml", {"litemaas_proxy_url": proxy.url, "litemaas_master_key": proxy.master_key, "litemaas_validate_certs": False,
                                               "capacity_check_model": "stub-model", "capacity_check_attendees": 4,
                                               "capacity_check_requests_per_attendee": 2, "capacity_check_ttft_p95_threshold": 600})
    assert "PASS: 8 requests by 4 attendees to stub-model" in proc.stdout
    assert proxy.master_key not in proc.stdout
    # The temporary keys are gone.
    status, body = proxy.admin("GET", "/key/list?size=100&return_full_object=true")
    assert status == 200
    assert not [k for k in body["keys"] if (k.get("key_alias") or "").startswith("capacity-check-")]


def test_playbook_fails_when_the_threshold_is_missed(playbook, proxy):
    proc = playbook.run("capacity_check.yml", {"litemaas_proxy_url": proxy.url, "litemaas_master_key": proxy.master_key,
                                               "capacity_check_model": "stub-model", "capacity_check_attendees": 2,
                                               "capacity_check_requests_per_attendee": 1, "capacity_check_ttft_p95_threshold": 0}, expect_rc=2)
    assert "FAIL: 2 requests by 2 attendees to stub-model" in proc.stdout
    assert recap(proc.stdout)["failed"] == 1
    status, body = proxy.admin("GET", "/key/list?size=100&return_full_object=true")
    assert not [k for k in body["keys"] if (k.get("key_alias") or "").startswith("capacity-check-")]

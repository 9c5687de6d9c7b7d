"""The models playbook against the real proxy: create, re-run unchanged, check mode, remove."""

from __future__ import annotations

import uuid

from tests.playbooks.conftest import recap


def _models(proxy, prefix):
    status, body = proxy.admin("GET", "/model/info")
    assert status == 200
    return sorted((m["model_name"], m["litellm_params"].get("api_base")) for m in body["data"] if m["model_name"].startswith(prefix))


def test_models_reconcile(playbook, proxy, stub_upstream):
    prefix = "m" + uuid.uuid4().hex[:6] + "-"
    models = [
        {"model_name": prefix + "granite", "model": "openai/stub-model", "api_base": stub_upstream.url,
         "model_info": {"mode": "chat", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}},
        {"model_name": prefix + "llama", "model": "openai/stub-model", "api_base": stub_upstream.url},
    ]
    conn = {"litemaas_proxy_url": proxy.url, "litemaas_master_key": proxy.master_key, "litemaas_models_portal_sync": "never"}
    first = playbook.run("models.yml", dict(conn, litemaas_models=models))
    assert recap(first.stdout)["changed"] >= 1
    assert _models(proxy, prefix) == [(prefix + "granite", stub_upstream.url), (prefix + "llama", stub_upstream.url)]
    assert proxy.master_key not in first.stdout

    again = playbook.run("models.yml", dict(conn, litemaas_models=models))
    assert recap(again.stdout)["changed"] == 0

    # The new model serves requests through the proxy.
    status, body, dummy = proxy.request("POST", "/v1/chat/completions", {"model": prefix + "granite", "messages": [{"role": "user", "content": "hi"}]},
                                        headers={"Authorization": f"Bearer {proxy.master_key}"})
    assert status == 200, body

    # Check mode predicts the change and changes nothing.
    moved = [dict(models[0], api_base=stub_upstream.base_url + "/other/v1"), models[1]]
    check = playbook.run("models.yml", dict(conn, litemaas_models=moved), check=True)
    assert recap(check.stdout)["changed"] >= 1
    assert _models(proxy, prefix)[0] == (prefix + "granite", stub_upstream.url)

    # Removal.
    gone = [{"model_name": prefix + "granite", "state": "absent"}, models[1]]
    playbook.run("models.yml", dict(conn, litemaas_models=gone))
    assert _models(proxy, prefix) == [(prefix + "llama", stub_upstream.url)]
    playbook.run("models.yml", dict(conn, litemaas_models=[{"model_name": prefix + "llama", "state": "absent"}]))
    assert _models(proxy, prefix) == []


def test_models_list_is_checked(playbook, proxy):
    proc = playbook.run("models.yml", {"litemaas_proxy_url": proxy.url, "litemaas_master_key": proxy.master_key,
                                       "litemaas_models": [{"model_name": "a"}, {"model_name": "a"}]}, expect_rc=2)
    assert "Every entry of litemaas_models needs a model_name, each name once" in proc.stdout

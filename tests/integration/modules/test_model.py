"""model and model_info through ansible-playbook against the live proxy."""

from __future__ import annotations

M = "rhpds.litemaas.model"


def deployments(proxy, name):
    status, data = proxy.admin("GET", "/model/info")
    assert status == 200, data
    return [m for m in data["data"] if m["model_name"] == name]


def test_model_lifecycle(play, proxy, stub_upstream, uid):
    name = f"{uid}-granite"
    upstream_secret = f"sk-upstream-{uid}-secret"
    args = {
        "model_name": name,
        "model": "openai/granite-3-8b",
        "api_base": stub_upstream.url,
        "model_api_key": upstream_secret,
        "litellm_params": {"rpm": 100},
        "model_info": {"mode": "chat", "input_cost_per_token": 0.000002, "output_cost_per_token": 0.000004, "supports_function_calling": True},
    }
    run = play([{M: args}], check=True, diff=True)
    assert run[0]["changed"] is True and run[0]["action"] == "created" and run[0]["msg"] == f"Would create model {name}"
    assert deployments(proxy, name) == []

    run = play([{M: args}, {M: args}, {"rhpds.litemaas.model_info": {"model_name": name}}], verbosity=3, diff=True)
    created, again, info = run.results
    assert created["changed"] is True and created["model"]["model_name"] == name and created["model"]["id"]
    assert again["changed"] is False and again["action"] == "unchanged"
    assert info["count"] == 1 and info["models"][0]["model_info"]["input_cost_per_token"] == 0.000002
    assert info["models"][0]["litellm_params"].get("api_key") in (None, "<redacted>")
    assert upstream_secret not in run.stdout and proxy.master_key not in run.stdout
    stored = deployments(proxy, name)
    assert len(stored) == 1 and stored[0]["litellm_params"]["rpm"] == 100 and stored[0]["model_info"]["supports_function_calling"] is True

    # The new model serves requests through the upstream.
    status, key = proxy.admin("POST", "/key/generate", {"models": [name]})
    assert status == 200
    status, body, _ = proxy.request("POST", "/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "hi"}]},
                                    {"Authorization": f"Bearer {key['key']}"})
    assert status == 200, body

    changed = dict(args, litellm_params={"rpm": 200}, model_info={"output_cost_per_token": 0.000005})
    run = play([{M: changed}, {M: changed}], diff=True)
    assert run[0]["changed"] is True and run[0]["action"] == "updated"
    assert run[0]["diff"]["before"]["litellm_params"]["rpm"] == 100 and run[0]["diff"]["after"]["litellm_params"]["rpm"] == 200
    assert run[1]["changed"] is False
    stored = deployments(proxy, name)
    assert stored[0]["litellm_params"]["rpm"] == 200 and stored[0]["model_info"]["output_cost_per_token"] == 0.000005
    assert stored[0]["model_info"]["input_cost_per_token"] == 0.000002, "fields not given must be kept"

    run = play([{M: {"model_name": name, "state": "absent"}}, {M: {"model_name": name, "state": "absent"}}])
    assert run[0]["changed"] is True and run[0]["deleted"] == [stored[0]["model_info"]["id"]]
    assert run[1]["changed"] is False
    assert deployments(proxy, name) == []


def test_model_bad_input(play, proxy, uid):
    run = play([
        {M: {"model_name": f"{uid}-nobase"}},
        {M: {"model_name": "stub-model", "api_base": "http://127.0.0.1:1/v1", "model": "openai/x", "api_key": "sk-wrong-master"}},
        {"rhpds.litemaas.model_info": {"api_url": "http://127.0.0.1:9"}},
    ])
    msgs = [r["msg"] for r in run.results]
    assert msgs[0] == f"model (the upstream model, for example openai/granite-3-8b) is required to create model '{uid}-nobase'"
    assert msgs[1].startswith("GET /model/info failed with HTTP 401: Authentication Error"), msgs[1]
    assert msgs[2] == "GET /model/info failed: cannot reach http://127.0.0.1:9: [Errno 111] Connection refused"

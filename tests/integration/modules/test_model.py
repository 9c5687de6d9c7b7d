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
    changed = dict(args, litellm_params={"rpm": 200}, model_info={"output_cost_per_token": 0.000005})
    info = {"rhpds.litemaas.model_info": {"model_name": name}}
    run = play([{M: args, "check_mode": True, "diff": True}, info, {M: args}, {M: args}, info, {M: changed, "diff": True}, {M: changed}],
               verbosity=3)
    check, before, created, again, listed, update, update_again = run.results
    assert check["changed"] is True and check["action"] == "created" and check["msg"] == f"Would create model {name}"
    assert before["count"] == 0, "check mode must not create"
    assert created["changed"] is True and created["model"]["model_name"] == name and created["model"]["id"]
    assert again["changed"] is False and again["action"] == "unchanged"
    assert listed["count"] == 1 and listed["models"][0]["model_info"]["input_cost_per_token"] == 0.000002
    assert listed["models"][0]["litellm_params"].get("api_key") in (None, "<redacted>")
    assert upstream_secret not in run.stdout and proxy.master_key not in run.stdout
    assert update["changed"] is True and update["action"] == "updated"
    assert update["diff"]["before"]["litellm_params"]["rpm"] == 100 and update["diff"]["after"]["litellm_params"]["rpm"] == 200
    assert update_again["changed"] is False
    stored = deployments(proxy, name)
    assert len(stored) == 1 and stored[0]["litellm_params"]["rpm"] == 200 and stored[0]["model_info"]["supports_function_calling"] is True
    assert stored[0]["model_info"]["output_cost_per_token"] == 0.000005
    assert stored[0]["model_info"]["input_cost_per_token"] == 0.000002, "fields not given must be kept"

    # The new model serves requests through the upstream.
    status, key = proxy.admin("POST", "/key/generate", {"models": [name]})
    assert status == 200
    status, body, dummy = proxy.request("POST", "/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "hi"}]},
                                        {"Authorization": f"Bearer {key['key']}"})
    assert status == 200, body

    run = play([{M: {"model_name": name, "state": "absent"}}, {M: {"model_name": name, "state": "absent"}}])
    assert run[0]["changed"] is True and run[0]["deleted"] == [stored[0]["model_info"]["id"]]
    assert run[1]["changed"] is False
    assert deployments(proxy, name) == []


def test_model_bad_input(play, proxy, uid):
    run = play([
        {M: {"model_name": f"{uid}-nobase"}},
        {M: {"model_name": "stub-model", "api_base": "http://127.0.0.1:1/v1", "model": "openai/x", "api_key": "sk-wrong-master"}},
        {"rhpds.litemaas.model_info": {"api_url": "http://127.0.0.1:9"}},
        {M: {"model_name": f"{uid}-sync", "model": "openai/x", "api_base": "http://127.0.0.1:9/v1", "portal_sync": True,
             "portal_url": "http://127.0.0.1:9", "portal_admin_key": "ltm_admin_test"}},
        {M: {"model_name": f"{uid}-sync", "state": "absent"}},
    ])
    msgs = [r["msg"] for r in run.results]
    assert run[3]["failed"] and run[3]["changed"] is True and run[3]["model"]["model_name"] == f"{uid}-sync"
    assert msgs[3] == ("The model was created, but the portal sync failed: POST /api/v1/models/sync failed: "
                       "cannot reach http://127.0.0.1:9: [Errno 111] Connection refused")
    assert run[4]["changed"] is True and "ltm_admin_test" not in run.stdout
    assert msgs[0] == f"model (the upstream model, for example openai/granite-3-8b) is required to create model '{uid}-nobase'"
    assert msgs[1].startswith("GET /model/info failed with HTTP 401: Authentication Error"), msgs[1]
    assert msgs[2] == "GET /model/info failed: cannot reach http://127.0.0.1:9: [Errno 111] Connection refused"

"""virtual_key and virtual_key_info through ansible-playbook against the live proxy."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

VK = "rhpds.litemaas.virtual_key"


def proxy_key(proxy, alias):
    status, data = proxy.admin("GET", f"/key/list?key_alias={alias}&return_full_object=true")
    assert status == 200, data
    keys = data["keys"]
    return keys[0] if keys else None


def test_check_mode_apply_reapply_update_and_remove(play, proxy, uid):
    alias = f"{uid}-one"
    args = {"key_alias": alias, "models": ["stub-model"], "max_budget": 5, "rpm_limit": 30, "duration": "30d", "metadata": {"guid": uid}}
    info = {"rhpds.litemaas.virtual_key_info": {"key_alias": alias}}

    run = play([{VK: args, "check_mode": True, "diff": True}, info, {VK: args}, {VK: args}])
    res, seen, first, second = run.results
    assert res["changed"] is True and res["action"] == "created", res
    assert res["msg"] == f"Would create key {alias}"
    assert res["virtual_key"]["max_budget"] == 5 and "key" not in res
    assert res["diff"]["before"] == {} and res["diff"]["after"]["key_alias"] == alias
    assert seen["count"] == 0, "check mode must not create the key"
    assert first["changed"] is True and first["action"] == "created", first
    secret = first["key"]
    assert secret.startswith("sk-")
    stored = proxy_key(proxy, alias)
    assert stored["token"] == hashlib.sha256(secret.encode()).hexdigest() == first["virtual_key"]["token"]
    assert stored["max_budget"] == 5 and stored["rpm_limit"] == 30 and stored["metadata"] == {"guid": uid}
    assert second["changed"] is False and second["action"] == "unchanged" and "key" not in second, second
    # The key works on the data plane.
    status, data, dummy = proxy.request("GET", "/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert status == 200 and [m["id"] for m in data["data"]] == ["stub-model"]

    changed = dict(args, max_budget=7.5, metadata={"owner": "ops"})
    absent = {"key_alias": alias, "state": "absent"}
    run = play([{VK: changed, "diff": True}, {VK: changed}, {VK: absent, "check_mode": True}, info, {VK: absent}, {VK: absent}, info])
    update, again, check_absent, still_there, removed, removed_again, gone = run.results
    assert update["changed"] is True and update["action"] == "updated", update
    assert update["diff"]["before"]["max_budget"] == 5 and update["diff"]["after"]["max_budget"] == 7.5
    assert "key" not in update
    assert update["virtual_key"]["metadata"] == {"guid": uid, "owner": "ops"}, "metadata entries not given must be kept"
    assert update["virtual_key"]["token"] == first["virtual_key"]["token"], "an update must never mint a second key"
    assert again["changed"] is False
    assert check_absent["changed"] is True and still_there["count"] == 1
    assert removed["changed"] is True and removed["action"] == "deleted"
    assert removed_again["changed"] is False
    assert gone["count"] == 0 and proxy_key(proxy, alias) is None


def test_expires_is_compared_not_pushed_out(play, proxy, uid):
    alias = f"{uid}-exp"
    when = (datetime.now(timezone.utc) + timedelta(days=10)).replace(microsecond=0)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    by_duration, by_stamp, never = ({"key_alias": alias, "duration": "1d"}, {"key_alias": alias, "expires": stamp},
                                    {"key_alias": alias, "expires": "never"})
    run = play([{VK: by_duration}, {VK: by_duration}, {VK: by_stamp}, {VK: by_stamp}, {VK: never}, {VK: never}])
    assert [r["changed"] for r in run.results] == [True, False, True, False, True, False], "duration applies at creation only"
    assert run[1]["virtual_key"]["expires"] == run[0]["virtual_key"]["expires"]
    assert run[2]["action"] == "updated"
    got = datetime.fromisoformat(run[2]["virtual_key"]["expires"].replace("Z", "+00:00"))
    assert abs((got - when).total_seconds()) < 5
    assert proxy_key(proxy, alias)["expires"] is None


def test_portal_budget_periods_are_kept_as_given_and_compared_by_meaning(play, proxy, uid):
    """The portal's words go to the proxy as given; a key stored with "monthly" (as the portal creates it) is not
    changed by budget_duration: 1mo, and "yearly" (a calendar year) is a real change."""
    alias = f"{uid}-period"
    status, data = proxy.admin("POST", "/key/generate", {"key_alias": f"{alias}-portal", "budget_duration": "monthly"})
    assert status == 200, data
    run = play([{VK: {"key_alias": f"{alias}-portal", "budget_duration": "1mo"}},
                {VK: {"key_alias": f"{alias}-portal", "budget_duration": "Monthly"}},
                {VK: {"key_alias": f"{alias}-portal", "budget_duration": "yearly"}, "diff": True},
                {VK: {"key_alias": f"{alias}-portal", "budget_duration": "yearly"}},
                {VK: {"key_alias": f"{alias}-new", "budget_duration": "weekly", "duration": "daily"}},
                {VK: {"key_alias": f"{alias}-new", "budget_duration": "1w"}}])
    assert [r["changed"] for r in run.results] == [False, False, True, False, True, False], run.results
    assert run[2]["diff"]["before"]["budget_duration"] == "monthly" and run[2]["diff"]["after"]["budget_duration"] == "yearly"
    assert proxy_key(proxy, f"{alias}-portal")["budget_duration"] == "yearly"
    created = proxy_key(proxy, f"{alias}-new")
    assert created["budget_duration"] == "weekly"
    lifetime = datetime.fromisoformat(created["expires"].replace("Z", "+00:00")) - datetime.now(timezone.utc)
    assert timedelta(hours=23) < lifetime <= timedelta(days=1)


def test_regenerate_rotates_the_secret(play, proxy, uid):
    alias = f"{uid}-rot"
    run = play([{VK: {"key_alias": alias}}, {VK: {"key_alias": alias, "regenerate": True}}])
    old, new = run[0]["key"], run[1]["key"]
    assert run[1]["changed"] is True and run[1]["action"] == "regenerated"
    assert new.startswith("sk-") and new != old
    assert proxy_key(proxy, alias)["token"] == hashlib.sha256(new.encode()).hexdigest()
    status, dummy, dummy = proxy.request("GET", "/v1/models", headers={"Authorization": f"Bearer {old}"})
    assert status == 401


def test_no_secret_in_verbose_output(play, proxy, uid):
    alias = f"{uid}-vvv"
    run = play([{VK: {"key_alias": alias, "models": ["stub-model"]}}, {VK: {"key_alias": alias, "regenerate": True}}], verbosity=3, diff=True)
    assert run.rc == 0, run.stdout
    created, rotated = run[0]["key"], run[1]["key"]
    for secret in (created, rotated, proxy.master_key):
        assert secret not in run.stdout
    assert "the output has been hidden" in run.stdout


def test_bad_input_messages(play, proxy, uid):
    alias = f"{uid}-bad"
    run = play([
        {VK: {"key_alias": alias, "models": ["stub-model", "no-such-model"]}},
        {VK: {"key_alias": alias, "max_budget": -1}},
        {VK: {"key_alias": alias, "duration": "30"}},
        {VK: {"key_alias": alias, "budget_duration": "monthly-ish"}},
        {VK: {"key_alias": alias, "api_key": "sk-wrong-master"}},
        {VK: {"key_alias": alias, "api_url": "http://127.0.0.1:9"}},
        {VK: {"key_alias": alias, "team_id": "no-such-team"}},
    ])
    msgs = [r["msg"] for r in run.results]
    assert all(r["failed"] for r in run.results), run.results
    assert msgs[0] == f"Unknown model(s) for key '{alias}': no-such-model. Check the model names served by the proxy (model_info)."
    assert msgs[1] == f"max_budget cannot be negative for key '{alias}'. Received: -1.0"
    assert msgs[2] == ("Invalid duration '30': expected a positive whole number followed by s, m, h, d, w or mo (for example 30d or 12h), "
                       f"or daily, weekly, monthly or yearly (key '{alias}')")
    assert msgs[3].startswith("Invalid budget_duration 'monthly-ish'")
    assert msgs[4].startswith(f"GET /key/list?key_alias={alias}&page=1&return_full_object=true&size=100 failed with HTTP 401: Authentication Error"), msgs[4]
    assert msgs[5] == (f"GET /key/list?key_alias={alias}&page=1&return_full_object=true&size=100 failed: "
                       "cannot reach http://127.0.0.1:9: [Errno 111] Connection refused")
    assert msgs[6] == "POST /key/generate failed with HTTP 400: Team not found, passed team_id=no-such-team. Create it with /team/new first."
    assert proxy_key(proxy, alias) is None


def test_info_by_alias_prefix_user_and_pages(play, proxy, uid):
    for n in range(12):
        status, body = proxy.admin("POST", "/key/generate", {"key_alias": f"{uid}-info-{n:02d}", "user_id": f"{uid}-u{n % 2}"})
        assert status == 200, body
    run = play([
        {"rhpds.litemaas.virtual_key_info": {"alias_prefix": f"{uid}-info-", "page_size": 5}},
        {"rhpds.litemaas.virtual_key_info": {"user_id": f"{uid}-u1", "page_size": 2}},
        {"rhpds.litemaas.virtual_key_info": {"key_alias": f"{uid}-info-03"}},
        {"rhpds.litemaas.virtual_key_info": {"alias_prefix": f"{uid}-none"}},
    ], check=True)
    prefix, by_user, one, none = run.results
    assert prefix["count"] == 12 and sorted(k["key_alias"] for k in prefix["virtual_keys"]) == [f"{uid}-info-{n:02d}" for n in range(12)]
    assert by_user["count"] == 6 and {k["user_id"] for k in by_user["virtual_keys"]} == {f"{uid}-u1"}
    assert [k["key_alias"] for k in one["virtual_keys"]] == [f"{uid}-info-03"]
    assert none["count"] == 0 and none["changed"] is False
    assert all("key" not in k for k in prefix["virtual_keys"])

"""virtual_keys (bulk) through ansible-playbook against the live proxy."""

from __future__ import annotations

import hashlib

VKS = "rhpds.litemaas.virtual_keys"


def aliases_with_prefix(proxy, prefix):
    out, page = [], 1
    while True:
        status, data = proxy.admin("GET", f"/key/list?page={page}&size=100&return_full_object=true")
        assert status == 200, data
        out += [k for k in data["keys"] if (k.get("key_alias") or "").startswith(prefix)]
        if page >= data["total_pages"]:
            return out
        page += 1


def test_count_check_apply_reapply_grow_shrink_and_remove(play, proxy, uid):
    prefix = f"{uid}-ws-"
    args = {"count": 40, "alias_pattern": prefix + "user{n}", "user_id_pattern": uid + "-user{n}", "models": ["stub-model"],
            "max_budget": 2, "rpm_limit": 10, "duration": "2d", "metadata": {"guid": uid}}

    run = play([{VKS: args, "check_mode": True}, {VKS: args}, {VKS: args}], verbosity=3)
    check, created, again = run.results
    assert check["changed"] is True and check["counts"]["created"] == 40 and check["msg"] == "check mode: 40 created", check
    assert not any("key" in k for k in check["virtual_keys"])
    assert created["changed"] is True and created["counts"] == {"created": 40, "updated": 0, "regenerated": 0, "deleted": 0, "unchanged": 0, "failed": 0}
    keys = created["virtual_keys"]
    assert [k["key_alias"] for k in keys] == [f"{prefix}user{n}" for n in range(1, 41)]
    assert all(k["key"].startswith("sk-") and hashlib.sha256(k["key"].encode()).hexdigest() == k["token"] for k in keys)
    assert keys[6]["user_id"] == f"{uid}-user7"
    for k in keys:
        assert k["key"] not in run.stdout, "a secret was displayed"
    assert again["changed"] is False and again["counts"]["unchanged"] == 40 and not any("key" in k for k in again["virtual_keys"])
    stored = aliases_with_prefix(proxy, prefix)
    assert len(stored) == 40 and {k["max_budget"] for k in stored} == {2} and {k["rpm_limit"] for k in stored} == {10}

    # Raise the budget of all and add 5 attendees; shrink back with exclusive removal of the extra ones; remove all.
    grown = dict(args, count=45, max_budget=3)
    shrunk = dict(grown, count=30, alias_prefix=prefix, exclusive=True)
    absent = {"alias_prefix": prefix, "state": "absent"}
    run = play([{VKS: grown, "diff": True}, {VKS: shrunk}, {VKS: shrunk}, {VKS: absent, "check_mode": True}, {VKS: absent}, {VKS: absent}])
    grow, shrink, shrink_again, check_absent, remove, remove_again = run.results
    assert grow["counts"] == {"created": 5, "updated": 40, "regenerated": 0, "deleted": 0, "unchanged": 0, "failed": 0}, grow["counts"]
    assert grow["diff"]["before"][f"{prefix}user1"]["max_budget"] == 2 and grow["diff"]["after"][f"{prefix}user1"]["max_budget"] == 3
    assert shrink["counts"] == {"created": 0, "updated": 0, "regenerated": 0, "deleted": 15, "unchanged": 30, "failed": 0}, shrink["counts"]
    assert shrink_again["changed"] is False
    assert check_absent["counts"]["deleted"] == 30 and remove["counts"]["deleted"] == 30, "check mode must not remove"
    assert remove_again["changed"] is False
    assert aliases_with_prefix(proxy, prefix) == []


def test_remove_by_prefix_pages_through_every_key(play, proxy, uid):
    prefix = f"{uid}-many-"
    # More keys than one page of /key/list, interleaved with keys that must survive.
    for n in range(130):
        status, body = proxy.admin("POST", "/key/generate", {"key_alias": f"{prefix}{n}"})
        assert status == 200, body
        if n % 40 == 0:
            assert proxy.admin("POST", "/key/generate", {"key_alias": f"{uid}-keep-{n}"})[0] == 200
    absent = {"alias_prefix": prefix, "state": "absent", "parallelism": 4}
    run = play([{VKS: absent, "check_mode": True}, {VKS: absent}])
    assert run[0]["counts"]["deleted"] == 130 and run[1]["counts"]["deleted"] == 130, run.results
    assert aliases_with_prefix(proxy, prefix) == []
    assert len(aliases_with_prefix(proxy, f"{uid}-keep-")) == 4


def test_partial_failure_keeps_the_successes(play, proxy, uid):
    keys = [
        {"key_alias": f"{uid}-p-ok1"},
        {"key_alias": f"{uid}-p-bad", "team_id": "no-such-team"},
        {"key_alias": f"{uid}-p-ok2", "max_budget": 9},
    ]
    fixed = [dict(k) for k in keys]
    fixed[1].pop("team_id")
    run = play([{VKS: {"keys": keys, "models": ["stub-model"], "max_budget": 1}}, {VKS: {"keys": fixed, "models": ["stub-model"], "max_budget": 1}}])
    res = run[0]
    # Fixed input: the failed key is created, the others are left alone.
    assert run[1]["counts"] == {"created": 1, "updated": 0, "regenerated": 0, "deleted": 0, "unchanged": 2, "failed": 0}
    assert res["failed"] is True and res["changed"] is True
    assert res["counts"] == {"created": 2, "updated": 0, "regenerated": 0, "deleted": 0, "unchanged": 0, "failed": 1}
    assert res["msg"] == (f"1 of 3 keys failed (2 created, 1 failed): {uid}-p-bad: POST /key/generate failed with HTTP 400: "
                          "Team not found, passed team_id=no-such-team. Create it with /team/new first.")
    by_alias = {k["key_alias"]: k for k in res["virtual_keys"]}
    assert by_alias[f"{uid}-p-ok1"]["key"].startswith("sk-") and by_alias[f"{uid}-p-ok2"]["key"].startswith("sk-")
    assert by_alias[f"{uid}-p-bad"]["action"] == "failed" and "key" not in by_alias[f"{uid}-p-bad"]
    stored = {k["key_alias"]: k for k in aliases_with_prefix(proxy, f"{uid}-p-")}
    assert set(stored) == {f"{uid}-p-ok1", f"{uid}-p-ok2", f"{uid}-p-bad"}
    assert stored[f"{uid}-p-ok1"]["max_budget"] == 1 and stored[f"{uid}-p-ok2"]["max_budget"] == 9


def test_bulk_bad_input(play, proxy, uid):
    run = play([
        {VKS: {"count": 3, "alias_pattern": f"{uid}-x", "models": ["stub-model"]}},
        {VKS: {"count": 3, "alias_pattern": f"{uid}-x{{n}}", "models": ["nope-model"]}},
        {VKS: {"keys": [{"key_alias": "a"}, {"key_alias": "a"}]}},
        {VKS: {"count": 2, "alias_pattern": f"{uid}-x{{n}}", "rpm_limit": -5}},
    ])
    msgs = [r["msg"] for r in run.results]
    assert msgs[0] == "alias_pattern must contain {n} (for example virtkey-abc12-user{n}) when count is given"
    assert msgs[1] == "Unknown model(s): nope-model. Check the model names served by the proxy (model_info)."
    assert msgs[2] == "Key alias 'a' is given more than once"
    assert msgs[3] == f"rpm_limit cannot be negative for key '{uid}-x1'. Received: -5"
    assert aliases_with_prefix(proxy, f"{uid}-x") == []


def test_regenerate_rotates_only_the_named_keys_in_one_call(play, proxy, uid):
    prefix = f"{uid}-rot-"
    keys = [{"key_alias": f"{prefix}{n}"} for n in range(4)]
    args = {"keys": keys, "max_budget": 5}
    rotate = {"keys": [dict(keys[1], regenerate=True), dict(keys[3], regenerate=True), keys[0], keys[2]], "max_budget": 5}
    run = play([{VKS: args}, {VKS: rotate, "check_mode": True}, {VKS: rotate}])
    created, check, rotated = run.results
    first = {k["key_alias"]: k for k in created["virtual_keys"]}
    assert check["counts"]["regenerated"] == 2 and not any("key" in k for k in check["virtual_keys"]), check
    assert rotated["changed"] is True and rotated["counts"] == {"created": 0, "updated": 0, "regenerated": 2, "deleted": 0, "unchanged": 2, "failed": 0}
    after = {k["key_alias"]: k for k in rotated["virtual_keys"]}
    for n in (1, 3):
        alias = f"{prefix}{n}"
        assert after[alias]["action"] == "regenerated" and after[alias]["key"].startswith("sk-") and after[alias]["key"] != first[alias]["key"]
        assert hashlib.sha256(after[alias]["key"].encode()).hexdigest() == after[alias]["token"]
        assert after[alias]["key"] not in run.stdout, "a secret was displayed"
    for n in (0, 2):
        assert after[f"{prefix}{n}"]["action"] == "unchanged" and "key" not in after[f"{prefix}{n}"]
    # The proxy holds the new secrets (old ones are gone); options and aliases are kept, nothing was duplicated.
    stored = {k["key_alias"]: k for k in aliases_with_prefix(proxy, prefix)}
    assert len(stored) == 4 and {k["max_budget"] for k in stored.values()} == {5}
    assert stored[f"{prefix}1"]["token"] == after[f"{prefix}1"]["token"] != first[f"{prefix}1"]["token"]
    assert stored[f"{prefix}0"]["token"] == first[f"{prefix}0"]["token"]

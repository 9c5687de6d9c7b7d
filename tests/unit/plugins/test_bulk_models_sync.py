from __future__ import annotations

from datetime import datetime, timezone

import pytest
from ansible_collections.rhpds.litemaas.plugins.module_utils import keysync, models
from ansible_collections.rhpds.litemaas.plugins.modules import virtual_keys

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def params(**kw):
    base = {name: None for name in virtual_keys.KEY_OPTION_NAMES}
    base.update(keys=None, count=None, start=1, alias_pattern=None, user_id_pattern=None)
    base.update(kw)
    return base


def test_expand_count_with_patterns_and_defaults():
    entries = virtual_keys.expand_keys(params(count=3, start=5, alias_pattern="lab-{n:03d}", user_id_pattern="user{n}@x", models=["m"], max_budget=2))
    assert [a for a, dummy in entries] == ["lab-005", "lab-006", "lab-007"]
    assert entries[0][1] == {"models": ["m"], "max_budget": 2, "user_id": "user5@x"}


def test_expand_keys_override_defaults_and_merge_metadata():
    entries = virtual_keys.expand_keys(params(keys=[{"key_alias": "a", "max_budget": 9, "metadata": {"b": 2}, "expires": "never"},
                                                    {"key_alias": "b"}],
                                              max_budget=1, metadata={"a": 1}, duration="1d"))
    assert entries[0] == ("a", {"max_budget": 9, "metadata": {"a": 1, "b": 2}, "expires": "never"})
    assert entries[1] == ("b", {"max_budget": 1, "metadata": {"a": 1}, "duration": "1d"})


@pytest.mark.parametrize("kw,message", [
    ({"count": 2, "alias_pattern": "no-placeholder"}, "alias_pattern must contain {n}"),
    ({"count": -1, "alias_pattern": "x{n}"}, "count cannot be negative"),
    ({"count": 1, "alias_pattern": "x{n}{m}"}, "Invalid alias_pattern or user_id_pattern"),
    ({"keys": [{"key_alias": "a"}, {"key_alias": "a"}]}, "Key alias 'a' is given more than once"),
])
def test_expand_rejects(kw, message):
    with pytest.raises(virtual_keys.BulkSpecError, match=message.replace("{", r"\{").replace("}", r"\}")):
        virtual_keys.expand_keys(params(**kw))


DEPLOYMENTS = [
    {"model_name": "g", "litellm_params": {"model": "openai/g", "api_base": "http://a/v1", "rpm": 10}, "model_info": {"id": "1", "mode": "chat"}},
    {"model_name": "g", "litellm_params": {"model": "openai/g", "api_base": "http://b/v1/"}, "model_info": {"id": "2"}},
    {"model_name": "h", "litellm_params": {"model": "openai/h", "api_base": "http://a/v1"}, "model_info": {"id": "3"}},
]


def test_matching_deployments_by_name_and_base():
    assert [d["model_info"]["id"] for d in models.matching_deployments(DEPLOYMENTS, "g")] == ["1", "2"]
    assert [d["model_info"]["id"] for d in models.matching_deployments(DEPLOYMENTS, "g", "http://b/v1")] == ["2"]
    assert models.matching_deployments(DEPLOYMENTS, "z") == []


def test_plan_model_create_update_none_delete():
    params_ = models.desired_params("openai/g", "http://c/v1", {"rpm": 5})
    plan = models.plan_model("g", params_, {"mode": "chat"}, None, secret_params={"api_key": "sk-up"})
    assert plan["action"] == "create" and plan["body"]["litellm_params"]["api_key"] == "sk-up"
    assert "sk-up" not in str(plan["after"])
    cur = DEPLOYMENTS[0]
    assert models.plan_model("g", models.desired_params("openai/g", "http://a/v1", {"rpm": 10}), {"mode": "chat"}, cur)["action"] == "none"
    plan = models.plan_model("g", models.desired_params(None, "http://a/v1", {"rpm": 20}), {"max_tokens": 10}, cur, secret_params={"api_key": "k"})
    assert plan["action"] == "update" and plan["body"] == {"litellm_params": {"rpm": 20}, "model_info": {"max_tokens": 10}}
    plan = models.plan_model("g", {}, {}, cur, secret_params={"api_key": "k"}, update_secrets=True)
    assert plan["body"] == {"litellm_params": {"api_key": "k"}}
    assert models.plan_model("g", {}, {}, cur, state="absent")["action"] == "delete"
    with pytest.raises(ValueError, match="model .* is required to create model 'g'"):
        models.plan_model("g", {"api_base": "x"}, {}, None)


def test_plan_sync_finds_every_difference():
    users = [{"id": "u1", "username": "alice", "email": "Alice@Example.com"}]
    portal = [
        {"id": "p1", "key_hash": "t1", "is_active": True, "name": "alive"},
        {"id": "p2", "key_hash": "t-gone", "is_active": True, "name": "gone"},
        {"id": "p3", "key_hash": "t3", "is_active": True, "name": "expired", "expires_at": None},
        {"id": "p4", "key_hash": "t4", "is_active": True, "expires_at": datetime(2026, 1, 1, tzinfo=timezone.utc)},
        {"id": "p5", "key_hash": "t-gone2", "is_active": False},
    ]
    proxy = [
        {"token": "t1", "key_alias": "k1"},
        {"token": "t3", "expires": "2026-05-01T00:00:00Z"},
        {"token": "t4"},
        {"token": "w1", "key_alias": "ws-1", "user_id": "alice@example.com"},
        {"token": "w2", "key_alias": "ws-2", "user_id": "bob"},
        {"token": "w3", "key_alias": "other", "user_id": "alice"},
        {"token": "w4", "key_alias": "ws-4", "user_id": "u1", "expires": "2026-01-01T00:00:00Z"},
    ]
    deact, imp, skipped = keysync.plan_sync(portal, proxy, users, import_keys=True, alias_prefix="ws-", now=NOW)
    assert {(d["id"], d["reason"]) for d in deact} == {("p2", "gone from the proxy"), ("p3", "expired on the proxy"), ("p4", "expired in the portal")}
    assert [(i["token"], i["user_id"]) for i in imp] == [("w1", "u1")]
    assert [s["token"] for s in skipped] == ["w2"]
    deact, imp, dummy = keysync.plan_sync(portal, proxy, users, deactivate=False, import_keys=False, now=NOW)
    assert deact == [] and imp == []


def test_import_row_has_no_secret():
    row = keysync.import_row({"user_id": "u1"}, {"token": "t" * 64, "key_alias": "ws-1", "key_name": "sk-...abcd", "max_budget": 3,
                                                 "expires": "2026-12-31T00:00:00+00:00", "user_id": "alice"})
    assert row[:5] == ("u1", "ws-1", "t" * 64, "sk-...abcd", "ws-1") and row[5] == 3 and row[10] == "2026-12-31T00:00:00Z"
    assert '"proxy_user_id": "alice"' in row[11]

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from ansible_collections.rhpds.litemaas.plugins.module_utils import key_options as ko

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
CURRENT = {
    "token": "abc", "key_alias": "k1", "key_name": "sk-...wxyz", "models": ["b", "a"], "max_budget": 5.0, "rpm_limit": None,
    "metadata": {"guid": "g1", "other": 1}, "expires": "2026-07-01T12:00:00+00:00", "blocked": None, "spend": 0.1,
}


def want(**opts):
    return ko.desired_key("k1", opts, now=NOW)


def test_desired_key_keeps_only_given_fields_and_normalises():
    w = want(models=["a"], max_budget=5, budget_duration="monthly", duration=" 30d", user_id=None)
    assert w == {"key_alias": "k1", "models": ["a"], "max_budget": 5, "budget_duration": "monthly", "duration": "30d"}


@pytest.mark.parametrize("stored,wanted,changes", [
    ("monthly", "1mo", {}),            # same period, another spelling: no change
    ("1mo", "Monthly", {}),
    ("weekly", "1w", {}),
    ("monthly", "yearly", {"budget_duration": "yearly"}),
    (None, "daily", {"budget_duration": "daily"}),
])
def test_budget_duration_compares_by_meaning(stored, wanted, changes):
    current = dict(CURRENT, budget_duration=stored)
    assert ko.update_changes(want(budget_duration=wanted), current, now=NOW) == changes


@pytest.mark.parametrize("opts,message", [
    ({"max_budget": -1}, "max_budget cannot be negative for key 'k1'. Received: -1"),
    ({"tpm_limit": -2}, "tpm_limit cannot be negative for key 'k1'. Received: -2"),
    ({"duration": "30"}, "Invalid duration '30'"),
    ({"expires": "tomorrow"}, "Invalid timestamp 'tomorrow'"),
    ({"expires": "2020-01-01T00:00:00Z"}, "Expiry 2020-01-01T00:00:00Z is not in the future"),
    ({"duration": "1d", "expires": "2027-01-01T00:00:00Z"}, "mutually exclusive"),
])
def test_desired_key_rejects(opts, message):
    with pytest.raises(ko.KeyOptionError) as err:
        want(**opts)
    assert message in str(err.value)


def test_plan_create_converts_expires_to_duration():
    plan = ko.plan_key(want(models=["a"], expires="2026-06-02T12:00:00Z"), None, now=NOW)
    assert plan["action"] == "create"
    assert plan["body"] == {"key_alias": "k1", "models": ["a"], "duration": "86400s"}
    assert plan["after"]["expires"] == "2026-06-02T12:00:00Z" and plan["before"] is None


def test_plan_create_with_duration_predicts_expiry():
    plan = ko.plan_key(want(duration="2d"), None, now=NOW)
    assert plan["body"] == {"key_alias": "k1", "duration": "2d"}
    assert plan["after"]["expires"] == "2026-06-03T12:00:00Z"


def test_plan_no_change_when_given_fields_match():
    plan = ko.plan_key(want(models=["a", "b"], max_budget=5, metadata={"guid": "g1"}, duration="90d"), CURRENT, now=NOW)
    assert plan["action"] == "none" and plan["body"] == {}, "duration must not be re-sent for an existing key"


def test_plan_update_sends_only_changes_and_merges_metadata():
    plan = ko.plan_key(want(models=["a", "b"], max_budget=6, metadata={"guid": "g2"}, rpm_limit=10), CURRENT, now=NOW)
    assert plan["action"] == "update"
    assert plan["body"] == {"max_budget": 6, "rpm_limit": 10, "metadata": {"guid": "g2", "other": 1}}
    assert plan["after"]["max_budget"] == 6 and plan["before"]["max_budget"] == 5.0
    assert "key" not in plan["after"]


def test_plan_expiry_compared_with_tolerance():
    assert ko.plan_key(want(expires="2026-07-01T12:01:00Z"), CURRENT, now=NOW)["action"] == "none"
    plan = ko.plan_key(want(expires="2026-08-01T12:00:00Z"), CURRENT, now=NOW)
    assert plan["action"] == "update" and plan["body"] == {"duration": "5270400s"}
    plan = ko.plan_key(want(expires="never"), CURRENT, now=NOW)
    assert plan["body"] == {"duration": "-1"} and plan["after"]["expires"] is None
    assert ko.plan_key(want(expires="never"), dict(CURRENT, expires=None), now=NOW)["action"] == "none"


def test_plan_regenerate_and_absent():
    assert ko.plan_key(want(), CURRENT, regenerate=True, now=NOW)["action"] == "regenerate"
    assert ko.plan_key(want(), CURRENT, state="absent", now=NOW)["action"] == "delete"
    assert ko.plan_key(want(), None, state="absent", now=NOW)["action"] == "none"


def test_public_key_never_returns_the_secret():
    view = ko.public_key(dict(CURRENT, key="sk-secret"))
    assert "key" not in view and view["token"] == "abc" and view["expires"] == "2026-07-01T12:00:00Z"


@pytest.mark.parametrize("models,unknown", [(["a", "x"], ["x"]), (["openai/*", "all-proxy-models", "grp"], []), ([], [])])
def test_unknown_models(models, unknown):
    assert ko.unknown_models(models, {"a", "grp"}) == unknown

"""Every value the LiteMaaS portal sends goes through the real proxy, and is read back as the portal reads it.

The portal's request schemas (backend/src/schemas/api-keys.ts, admin-users.ts) offer the budget periods
``daily | weekly | monthly | yearly`` and LiteLLM forms (``30d``, ``1mo``), and the backend passes them unchanged
as ``budget_duration`` to /key/generate, /key/update and /user/update (see shared/reference/litemaas-portal.md).
The durations come from the shared table tests/data/durations.yaml, the same one the modules are checked against.
Calls are made as the portal makes them: LiteLLM-style bodies with the master key in ``x-litellm-api-key``.
"""

from __future__ import annotations

import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from openai import OpenAI

from tests.proxy.conftest import db_value
from tests.support.proxy import http_json

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "files" / "proxy"))
from litemaas_proxy.durations import duration_after, next_budget_reset  # noqa: E402

TABLE = yaml.safe_load((REPO / "tests" / "data" / "durations.yaml").read_text())
ACCEPTED = [row["input"] for row in TABLE["accepted"]]
REJECTED = TABLE["rejected"]
PORTAL_WORDS = ["daily", "weekly", "monthly", "yearly"]
UNLIMITED = 2147483647  # the portal's "unlimited" TPM/RPM
UTC = timezone.utc


def uid(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def portal(proxy, method: str, path: str, body=None):
    status, data, dummy = http_json(method, proxy.url + path, body, {"x-litellm-api-key": proxy.master_key})
    return status, data


def ts(value) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def assert_reset_for(value: str, reset_at, before: datetime, after: datetime):
    """budget_reset_at is the calendar-aligned reset computed at the moment of the call."""
    assert ts(reset_at) in (next_budget_reset(value, before), next_budget_reset(value, after)), (value, reset_at)


def assert_bad(status, data, field: str, value):
    assert status == 400, data
    err = data["error"]
    assert set(err) >= {"message", "type", "param", "code"} and err["code"] == "400", data
    assert err["param"] == field, data
    assert field.split(".")[0] in err["message"], data
    if isinstance(value, str):
        assert repr(value) in err["message"], data


def portal_user(proxy, team_id: str, **extra) -> str:
    """The portal's /team/new + /user/new at first login (bodies as captured)."""
    status, data = portal(proxy, "GET", f"/team/info?team_id={team_id}")
    if status == 404:
        status, data = portal(proxy, "POST", "/team/new", {
            "team_id": team_id, "team_alias": "Default Team", "max_budget": 10000, "tpm_limit": 50000, "rpm_limit": 1000, "models": [],
            "admins": []})
        assert status == 200, data
    user_id = str(uuid.uuid4())
    body = {"user_id": user_id, "user_email": f"{user_id[:8]}@example.com", "user_alias": uid("user"), "user_role": "internal_user",
            "max_budget": 100, "tpm_limit": 100000, "rpm_limit": 120, "auto_create_key": False, "teams": [team_id], **extra}
    status, data = portal(proxy, "POST", "/user/new", body)
    assert status == 200, data
    return user_id


@pytest.fixture(scope="module")
def team_id():
    return "a0000000-0000-4000-8000-" + uuid.uuid4().hex[:12]


# ------------------------------------------------------------------ every accepted duration, every field


@pytest.mark.parametrize("value", ACCEPTED, ids=repr)
def test_key_generate_and_update_keep_every_duration_as_given(proxy, team_id, value):
    user_id = portal_user(proxy, team_id)
    before = datetime.now(UTC)
    status, data = portal(proxy, "POST", "/key/generate", {
        "key_alias": uid("key"), "duration": value, "models": ["stub-model"], "max_budget": 10, "user_id": user_id, "team_id": team_id,
        "tpm_limit": UNLIMITED, "rpm_limit": UNLIMITED, "budget_duration": value,
        "model_max_budget": {"stub-model": {"budget_limit": 5, "time_period": value}},
        "metadata": {"created_by": "litemaas", "model_count": 1, "legacy_request": False}})
    after = datetime.now(UTC)
    assert status == 200, data
    key = data["key"]
    assert data["budget_duration"] == value
    assert_reset_for(value, data["budget_reset_at"], before, after)
    assert duration_after(value, before) <= ts(data["expires"]) <= duration_after(value, after)

    # /key/info with the user's own key, as the portal reads it: every value exactly as given.
    status, info, dummy = http_json("GET", proxy.url + "/key/info", None, {"x-litellm-api-key": key})
    assert status == 200, info
    info = info["info"]
    assert info["budget_duration"] == value
    assert info["model_max_budget"] == {"stub-model": {"budget_limit": 5, "time_period": value}}
    assert (info["tpm_limit"], info["rpm_limit"]) == (UNLIMITED, UNLIMITED)

    # /key/update with the same value, then a portal word: stored as given again.
    for new in (value, PORTAL_WORDS[len(value) % 4]):
        before = datetime.now(UTC)
        status, data = portal(proxy, "POST", "/key/update", {"key": key, "budget_duration": new, "spend": 0})
        after = datetime.now(UTC)
        assert status == 200, data
        assert data["budget_duration"] == new
        assert_reset_for(new, data["budget_reset_at"], before, after)
    assert db_value(proxy.dsn, 'SELECT budget_duration FROM "LiteLLM_VerificationToken" WHERE key_alias = %s', info["key_alias"]) == new


@pytest.mark.parametrize("value", ACCEPTED, ids=repr)
def test_user_new_and_update_keep_every_duration_as_given(proxy, team_id, value):
    before = datetime.now(UTC)
    user_id = portal_user(proxy, team_id, budget_duration=value)
    after = datetime.now(UTC)
    status, data = portal(proxy, "GET", f"/user/info?user_id={user_id}")
    assert status == 200, data
    assert data["user_info"]["budget_duration"] == value
    assert_reset_for(value, data["user_info"]["budget_reset_at"], before, after)
    # The portal's admin "budget limits": /user/update with max_budget, TPM/RPM "unlimited" and the period.
    new = PORTAL_WORDS[len(value) % 4]
    status, data = portal(proxy, "POST", "/user/update", {
        "user_id": user_id, "max_budget": 50, "tpm_limit": UNLIMITED, "rpm_limit": UNLIMITED, "budget_duration": new, "spend": 0})
    assert status == 200, data
    status, data = portal(proxy, "GET", f"/user/info?user_id={user_id}")
    info = data["user_info"]
    assert (info["budget_duration"], info["max_budget"], info["tpm_limit"], info["rpm_limit"]) == (new, 50, UNLIMITED, UNLIMITED)


@pytest.mark.parametrize("value", PORTAL_WORDS + ["30d", "1mo"])
def test_team_new_and_update_take_every_portal_period(proxy, value):
    team = uid("team")
    status, data = portal(proxy, "POST", "/team/new", {"team_id": team, "max_budget": 100, "budget_duration": value})
    assert status == 200, data
    again = value.capitalize() if value in PORTAL_WORDS else value  # the words in any letter case
    status, data = portal(proxy, "POST", "/team/update", {"team_id": team, "budget_duration": again})
    assert status == 200, data
    status, data = portal(proxy, "GET", f"/team/info?team_id={team}")
    assert data["team_info"]["budget_duration"] == again


# ------------------------------------------------------------------ every rejected duration: 400, nothing created


@pytest.mark.parametrize("value", REJECTED, ids=repr)
def test_rejected_durations_name_the_field_and_create_nothing(proxy, team_id, value):
    alias = uid("bad")
    # "-1" is not a duration, but `duration: "-1"` means "never expires" (LiteLLM's /key/update), so only budget_duration here.
    for field in ("budget_duration",) if value == "-1" else ("budget_duration", "duration"):
        status, data = portal(proxy, "POST", "/key/generate", {"key_alias": alias, "models": ["stub-model"], field: value})
        assert_bad(status, data, field, value)
    status, data = portal(proxy, "POST", "/key/generate", {
        "key_alias": alias, "model_max_budget": {"stub-model": {"budget_limit": 1, "time_period": value}}})
    assert_bad(status, data, "model_max_budget", value)
    assert "model_max_budget.stub-model.time_period" in data["error"]["message"]
    assert db_value(proxy.dsn, 'SELECT count(*) FROM "LiteLLM_VerificationToken" WHERE key_alias = %s', alias) == 0
    user_id = str(uuid.uuid4())
    status, data = portal(proxy, "POST", "/user/new", {"user_id": user_id, "max_budget": 1, "budget_duration": value, "auto_create_key": False})
    assert_bad(status, data, "budget_duration", value)
    status, data = portal(proxy, "GET", f"/user/info?user_id={user_id}")
    assert status == 404, data
    status, data = portal(proxy, "POST", "/team/new", {"team_id": alias, "budget_duration": value})
    assert_bad(status, data, "budget_duration", value)
    assert db_value(proxy.dsn, 'SELECT count(*) FROM "LiteLLM_TeamTable" WHERE team_id = %s', alias) == 0


# ------------------------------------------------------------------ all or nothing


def key_row(proxy, alias: str):
    return db_value(proxy.dsn, 'SELECT row_to_json(t)::text FROM (SELECT max_budget, tpm_limit, budget_duration, budget_reset_at, models, '
                               'expires, metadata FROM "LiteLLM_VerificationToken" WHERE key_alias = %s) t', alias)


@pytest.mark.parametrize("bad", [{"budget_duration": "fortnightly"}, {"duration": "30 d"}, {"tpm_limit": -1}, {"max_budget": "lots"},
                                 {"models": ["no-such-model"]}, {"model_max_budget": {"stub-model": {"budget_limit": 1, "time_period": "1y"}}},
                                 {"team_id": "no-such-team"}], ids=lambda b: next(iter(b)))
def test_key_update_with_one_bad_field_changes_nothing(proxy, bad):
    alias = uid("aon")
    status, data = portal(proxy, "POST", "/key/generate", {
        "key_alias": alias, "models": ["stub-model"], "max_budget": 10, "tpm_limit": 100, "budget_duration": "monthly", "duration": "30d"})
    assert status == 200, data
    before = key_row(proxy, alias)
    body = {"key": data["key"], "max_budget": 99, "tpm_limit": 5, "budget_duration": "daily", "metadata": {"x": 1}, **bad}
    status, err = portal(proxy, "POST", "/key/update", body)
    field = next(iter(bad))
    assert status == 400 and err["error"]["param"] == field, err
    assert key_row(proxy, alias) == before


@pytest.mark.parametrize("bad", [{"budget_duration": "Monthly!"}, {"rpm_limit": "many"}, {"max_budget": -5}], ids=lambda b: next(iter(b)))
def test_user_and_team_update_with_one_bad_field_change_nothing(proxy, team_id, bad):
    user_id = portal_user(proxy, team_id, budget_duration="monthly")
    row = 'SELECT row_to_json(t)::text FROM (SELECT max_budget, tpm_limit, rpm_limit, budget_duration, budget_reset_at FROM "{}" WHERE {} = %s) t'
    before = db_value(proxy.dsn, row.format("LiteLLM_UserTable", "user_id"), user_id)
    status, err = portal(proxy, "POST", "/user/update", {"user_id": user_id, "max_budget": 7, "tpm_limit": 7, "budget_duration": "weekly", **bad})
    assert status == 400 and err["error"]["param"] == next(iter(bad)), err
    assert db_value(proxy.dsn, row.format("LiteLLM_UserTable", "user_id"), user_id) == before

    team = uid("team")
    status, data = portal(proxy, "POST", "/team/new", {"team_id": team, "max_budget": 1, "budget_duration": "weekly"})
    assert status == 200, data
    before = db_value(proxy.dsn, row.format("LiteLLM_TeamTable", "team_id"), team)
    status, err = portal(proxy, "POST", "/team/update", {"team_id": team, "max_budget": 9, "tpm_limit": 9, **bad})
    assert status == 400 and err["error"]["param"] == next(iter(bad)), err
    assert db_value(proxy.dsn, row.format("LiteLLM_TeamTable", "team_id"), team) == before


def test_user_new_with_a_bad_key_field_creates_neither_user_nor_key(proxy):
    user_id, alias = str(uuid.uuid4()), uid("auto")
    status, err = portal(proxy, "POST", "/user/new", {
        "user_id": user_id, "budget_duration": "monthly", "key_alias": alias, "duration": "yearly", "models": ["no-such-model"]})
    assert status == 400 and err["error"]["param"] == "models", err
    assert portal(proxy, "GET", f"/user/info?user_id={user_id}")[0] == 404
    assert db_value(proxy.dsn, 'SELECT count(*) FROM "LiteLLM_VerificationToken" WHERE key_alias = %s', alias) == 0


# ------------------------------------------------------------------ the portal's other value shapes


def test_portal_key_shapes_create_rotate_update_and_use(proxy, team_id):
    """Per-user key creation (every optional field), rotation (max_budget as a numeric string, no user_id or alias),
    update with ``expires: null`` and ``duration: "<n>d"``, then a real request with the official client."""
    user_id = portal_user(proxy, team_id)
    status, data = portal(proxy, "POST", "/key/generate", {
        "key_alias": uid("workshop-key") + "_6c34051d", "duration": "30d", "models": ["stub-model", "granite-3-8b"], "max_budget": 25.5,
        "user_id": user_id, "team_id": team_id, "tpm_limit": UNLIMITED, "rpm_limit": UNLIMITED, "max_parallel_requests": 4,
        "budget_duration": "monthly", "soft_budget": 20,
        "model_max_budget": {"stub-model": {"budget_limit": 10, "time_period": "daily"}, "granite-3-8b": {"budget_limit": 3, "time_period": "1mo"}},
        "model_rpm_limit": {"stub-model": 60}, "model_tpm_limit": {"stub-model": 10000}, "permissions": {}, "tags": ["workshop"],
        "guardrails": [], "metadata": {"created_by": "litemaas", "model_count": 2, "legacy_request": False}})
    assert status == 200, data
    first = data["key"]

    # Rotation: the portal sends max_budget straight from a PostgreSQL DECIMAL.
    status, rotated = portal(proxy, "POST", "/key/generate", {
        "models": ["stub-model"], "max_budget": "20.00", "tpm_limit": UNLIMITED, "rpm_limit": UNLIMITED,
        "metadata": {"user_id": user_id, "litemaas_key_id": "k1", "rotated_at": "2026-12-06T10:00:00Z"}})
    assert status == 200, rotated
    assert rotated["max_budget"] == 20.0

    status, data = portal(proxy, "POST", "/key/update", {"key": first, "expires": None, "budget_duration": "weekly", "max_budget": 30})
    assert status == 200, data
    assert data["expires"] is None and data["budget_duration"] == "weekly"
    status, data = portal(proxy, "POST", "/key/update", {"key": first, "duration": "7d"})
    assert status == 200, data
    assert data["expires"] is not None

    status, info, dummy = http_json("GET", proxy.url + "/key/info", None, {"x-litellm-api-key": first})
    info = info["info"]
    assert (info["max_budget"], info["budget_duration"], info["soft_budget"], info["max_parallel_requests"]) == (30, "weekly", 20, 4)
    assert info["model_max_budget"]["stub-model"] == {"budget_limit": 10, "time_period": "daily"}
    # As LiteLLM keeps them: in the key's metadata.
    assert info["metadata"]["model_rpm_limit"] == {"stub-model": 60} and info["metadata"]["model_tpm_limit"] == {"stub-model": 10000}
    assert info["metadata"]["tags"] == ["workshop"] and info["metadata"]["created_by"] == "litemaas"
    assert sorted(info["models"]) == ["granite-3-8b", "stub-model"]

    # The key works for a real request, with the official client, as an attendee uses it.
    answer = OpenAI(base_url=proxy.url + "/v1", api_key=first, max_retries=0, timeout=30).chat.completions.create(
        model="stub-model", messages=[{"role": "user", "content": "two words"}], max_tokens=3)
    assert answer.choices[0].message.content == "tok0 tok1 tok2"
    assert answer.usage.prompt_tokens == 2


# ------------------------------------------------------------------ durations in settings


def test_duration_settings_apply_and_bad_ones_name_the_setting(proxy_factory, tmp_path):
    """litellm_settings.internal_user_budget_duration / default_key_generate_params and the budget time zone."""
    settings = {"litellm_settings": {"internal_user_budget_duration": "Monthly", "timezone": "Europe/Paris",
                                     "default_key_generate_params": {"budget_duration": "weekly", "duration": "yearly"}}}
    other = proxy_factory(database=f"durations_{uuid.uuid4().hex[:8]}", config_extra=settings)
    status, data = other.admin("POST", "/user/new", {"user_id": uid("u"), "auto_create_key": False})
    assert status == 200, data
    assert data["budget_duration"] == "Monthly"
    # The 1st of next month at midnight in Paris (23:00 or 22:00 UTC the day before).
    reset = ts(data["budget_reset_at"]).astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert (reset.day, reset.hour, reset.minute) == (1, 0, 0)
    before = datetime.now(UTC)
    status, data = other.admin("POST", "/key/generate", {"models": ["stub-model"]})
    assert status == 200, data
    assert data["budget_duration"] == "weekly"
    assert ts(data["expires"]) >= duration_after("yearly", before)
    status, data = other.admin("POST", "/key/generate", {"budget_duration": "daily", "duration": "1h"})
    assert (data["budget_duration"], ts(data["expires"]) < duration_after("1d", before)) == ("daily", True)

    from litemaas_proxy.config import load_settings
    bad_settings = (
        ({"litellm_settings": {"internal_user_budget_duration": "fortnightly"}},
         "litellm_settings.internal_user_budget_duration: Invalid duration 'fortnightly'"),
        ({"litellm_settings": {"default_key_generate_params": {"duration": "1y"}}}, "litellm_settings.default_key_generate_params.duration"),
        ({"litellm_settings": {"timezone": "Mars/Olympus"}}, "Invalid LITEMAAS_BUDGET_TIMEZONE / litellm_settings.timezone 'Mars/Olympus'"),
    )
    for bad, setting in bad_settings:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ValueError, match=setting.replace("(", r"\(").replace(".", r"\.")):
            load_settings(str(path), env={})
    with pytest.raises(ValueError, match="Invalid LITEMAAS_BUDGET_TIMEZONE"):
        load_settings(None, env={"LITEMAAS_BUDGET_TIMEZONE": "Nowhere/Never"})
    with pytest.raises(ValueError, match="LITEMAAS_DEFAULT_USER_BUDGET_DURATION / litellm_settings.internal_user_budget_duration: Invalid duration '1y'"):
        load_settings(None, env={"LITEMAAS_DEFAULT_USER_BUDGET_DURATION": "1y"})
    assert load_settings(None, env={"LITEMAAS_DEFAULT_USER_BUDGET_DURATION": "yearly"}).default_user_budget_duration == "yearly"

"""Bad option values for every module of the collection, through ``ansible-playbook`` against a live proxy.

All cases run in ONE playbook (each task with ``ignore_errors`` and ``register``; starting ansible-playbook costs
seconds), then each case is checked on its own: the task failed, its message is one line and names the option
(or carries the server's error), and nothing was created or changed — on the proxy (its own database) and in
the portal database.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg2
import pytest
import yaml

from tests.proxy.conftest import db_value

PORTAL_SCHEMA = Path(__file__).resolve().parents[1] / "integration" / "modules" / "portal_schema.sql"
P = "rbi"  # prefix of every alias and name the cases use
VK, VKS, VKI = "rhpds.litemaas.virtual_key", "rhpds.litemaas.virtual_keys", "rhpds.litemaas.virtual_key_info"
MODEL, MODEL_INFO, KEY_SYNC = "rhpds.litemaas.model", "rhpds.litemaas.model_info", "rhpds.litemaas.key_sync"
PORTAL_USER, CAPACITY = "rhpds.litemaas.portal_user", "rhpds.litemaas.capacity_check"
ISVC = "rhpds.litemaas.inference_service_info"
WRONG_KEY = "sk-not-the-master-key"
UNREACHABLE = "http://127.0.0.1:9"
PORTAL_DSN = "{{ portal_dsn }}"  # filled in by the play's vars

# (case id, module, options, words the one-line message must contain). Options may use {{ portal_dsn }}.
CASES = [
    # ---------------------------------------------------------------- virtual_key
    ("vk-budget-type", VK, {"key_alias": f"{P}-vk1", "max_budget": "lots"}, ["max_budget", "float"]),
    ("vk-budget-negative", VK, {"key_alias": f"{P}-vk2", "max_budget": -5}, ["max_budget cannot be negative"]),
    ("vk-tpm-type", VK, {"key_alias": f"{P}-vk3", "tpm_limit": "fast"}, ["tpm_limit", "int"]),
    ("vk-rpm-negative", VK, {"key_alias": f"{P}-vk4", "rpm_limit": -1}, ["rpm_limit cannot be negative"]),
    ("vk-parallel-too-big", VK, {"key_alias": f"{P}-vk5", "max_parallel_requests": 2**40},
     ["POST /key/generate", "HTTP 400", "max_parallel_requests must be at most"]),
    ("vk-duration", VK, {"key_alias": f"{P}-vk6", "duration": "30x"}, ["duration", "30x"]),
    ("vk-budget-duration", VK, {"key_alias": f"{P}-vk7", "budget_duration": "often"}, ["budget_duration", "often"]),
    ("vk-expires-garbage", VK, {"key_alias": f"{P}-vk8", "expires": "next tuesday"}, ["expires", "next tuesday"]),
    ("vk-expires-past", VK, {"key_alias": f"{P}-vk9", "expires": "2000-01-01T00:00:00Z"}, ["expires", "not in the future"]),
    ("vk-duration-and-expires", VK, {"key_alias": f"{P}-vk10", "duration": "1d", "expires": "2099-01-01T00:00:00Z"},
     ["mutually exclusive", "duration", "expires"]),
    ("vk-state-choice", VK, {"key_alias": f"{P}-vk11", "state": "gone"}, ["state", "present, absent", "gone"]),
    ("vk-unknown-model", VK, {"key_alias": f"{P}-vk12", "models": ["no-such-model"]}, ["Unknown model(s)", "no-such-model"]),
    ("vk-metadata-type", VK, {"key_alias": f"{P}-vk13", "metadata": [1, 2]}, ["metadata", "dict"]),
    ("vk-blocked-type", VK, {"key_alias": f"{P}-vk14", "blocked": "maybe"}, ["blocked", "bool"]),
    ("vk-missing-alias", VK, {"max_budget": 1}, ["missing required arguments: key_alias"]),
    ("vk-empty-alias", VK, {"key_alias": " "}, ["key_alias must be a non-empty string"]),
    ("vk-unknown-option", VK, {"key_alias": f"{P}-vk15", "max_budgett": 1}, ["Unsupported parameters", "max_budgett"]),
    ("vk-unknown-team", VK, {"key_alias": f"{P}-vk16", "team_id": "no-such-team"}, ["POST /key/generate", "HTTP 400", "Team not found"]),
    # Updates of an existing key that are refused leave it exactly as it was (snapshot of its row).
    ("vk-update-negative", VK, {"key_alias": f"{P}-existing", "max_budget": -1}, ["max_budget cannot be negative"]),
    ("vk-update-unknown-team", VK, {"key_alias": f"{P}-existing", "rpm_limit": 5, "team_id": "no-such-team"},
     ["POST /key/update", "HTTP 400", "Team not found"]),
    ("vk-bad-url", VK, {"key_alias": f"{P}-vk17", "api_url": "not a url"}, ["api_url"]),
    ("vk-unreachable", VK, {"key_alias": f"{P}-vk18", "api_url": UNREACHABLE}, ["cannot reach", "127.0.0.1:9"]),
    ("vk-wrong-master-key", VK, {"key_alias": f"{P}-vk19", "api_key": WRONG_KEY}, ["HTTP 401"]),
    ("vk-timeout-type", VK, {"key_alias": f"{P}-vk20", "request_timeout": "soon"}, ["request_timeout", "float"]),
    # ---------------------------------------------------------------- virtual_keys
    ("vks-count-without-pattern", VKS, {"count": 3}, ["count", "alias_pattern"]),
    ("vks-pattern-without-n", VKS, {"count": 2, "alias_pattern": f"{P}-bulk-user"}, ["alias_pattern must contain {n}"]),
    ("vks-pattern-unknown-field", VKS, {"count": 2, "alias_pattern": f"{P}-bulk-{{n}}-{{team}}"}, ["Invalid alias_pattern", "team"]),
    ("vks-count-negative", VKS, {"count": -1, "alias_pattern": f"{P}-neg-{{n}}"}, ["count cannot be negative"]),
    ("vks-count-type", VKS, {"count": "many", "alias_pattern": f"{P}-t-{{n}}"}, ["count", "int"]),
    ("vks-entry-without-alias", VKS, {"keys": [{"max_budget": 1}]}, ["key_alias", "keys"]),
    ("vks-duplicate-alias", VKS, {"keys": [{"key_alias": f"{P}-dup"}, {"key_alias": f"{P}-dup"}]}, [f"{P}-dup", "more than once"]),
    ("vks-one-bad-entry", VKS, {"keys": [{"key_alias": f"{P}-good1"}, {"key_alias": f"{P}-bad1", "duration": "30x"}]},
     ["duration", "30x", f"{P}-bad1"]),
    ("vks-update-and-bad-entry", VKS, {"keys": [{"key_alias": f"{P}-existing", "max_budget": 10}, {"key_alias": f"{P}-new", "budget_duration": "1y"}]},
     ["budget_duration", "1y"]),
    ("vks-negative-budget", VKS, {"count": 2, "alias_pattern": f"{P}-nb-{{n}}", "max_budget": -1}, ["max_budget cannot be negative"]),
    ("vks-parallelism", VKS, {"count": 1, "alias_pattern": f"{P}-par-{{n}}", "parallelism": 0}, ["parallelism must be between 1 and 64"]),
    ("vks-exclusive-without-prefix", VKS, {"keys": [{"key_alias": f"{P}-ex1"}], "exclusive": True}, ["exclusive requires alias_prefix"]),
    ("vks-nothing-given", VKS, {"state": "present"}, ["one of keys, count or alias_prefix is required"]),
    ("vks-unknown-model", VKS, {"count": 2, "alias_pattern": f"{P}-um-{{n}}", "models": ["no-such-model"]}, ["Unknown model(s)", "no-such-model"]),
    ("vks-state-choice", VKS, {"count": 1, "alias_pattern": f"{P}-sc-{{n}}", "state": "deleted"}, ["state", "deleted"]),
    ("vks-wrong-master-key", VKS, {"count": 2, "alias_pattern": f"{P}-wk-{{n}}", "api_key": WRONG_KEY}, ["HTTP 401"]),
    # A list of dicts that is not one: the message names the option and the expected shape.
    ("vks-keys-type", VKS, {"keys": "a,b"}, ["keys must be a list of dicts", "option 'keys'", "key_alias"]),
    ("vks-keys-strings", VKS, {"keys": ["user1", "user2"]}, ["keys must be a list of dicts", "option 'keys'"]),
    # ---------------------------------------------------------------- virtual_key_info
    ("vki-page-size", VKI, {"page_size": 0}, ["page_size must be between 1 and 100"]),
    ("vki-page-size-type", VKI, {"page_size": "big"}, ["page_size", "int"]),
    ("vki-wrong-master-key", VKI, {"key_alias": f"{P}-x", "api_key": WRONG_KEY}, ["HTTP 401"]),
    ("vki-unreachable", VKI, {"api_url": UNREACHABLE}, ["cannot reach"]),
    ("vki-unknown-option", VKI, {"alias": f"{P}-x", "colour": "red"}, ["Unsupported parameters", "colour"]),
    # ---------------------------------------------------------------- model
    ("model-missing-name", MODEL, {"model": "openai/x", "api_base": "http://127.0.0.1:9/v1"}, ["missing required arguments: model_name"]),
    ("model-no-upstream-model", MODEL, {"model_name": f"{P}-m1"}, ["model", "is required to create model", f"{P}-m1"]),
    ("model-state-choice", MODEL, {"model_name": f"{P}-m2", "model": "openai/x", "state": "gone"}, ["state", "gone"]),
    ("model-params-type", MODEL, {"model_name": f"{P}-m3", "model": "openai/x", "litellm_params": [1]}, ["litellm_params", "dict"]),
    ("model-info-type", MODEL, {"model_name": f"{P}-m4", "model": "openai/x", "model_info": "chat"}, ["model_info", "dict"]),
    ("model-cost-type", MODEL, {"model_name": f"{P}-m5", "model": "openai/x", "litellm_params": {"input_cost_per_token": "cheap"}},
     ["POST /model/new", "HTTP 400", "input_cost_per_token must be a number"]),
    ("model-negative-rpm", MODEL, {"model_name": f"{P}-m6", "model": "openai/x", "litellm_params": {"rpm": -3}},
     ["POST /model/new", "HTTP 400", "rpm cannot be negative"]),
    ("model-access-groups", MODEL, {"model_name": f"{P}-m7", "model": "openai/x", "model_info": {"access_groups": "team-a"}},
     ["HTTP 400", "access_groups must be a list"]),
    ("model-portal-sync-type", MODEL, {"model_name": f"{P}-m8", "model": "openai/x", "portal_sync": "maybe"}, ["portal_sync", "bool"]),
    ("model-wrong-master-key", MODEL, {"model_name": f"{P}-m9", "model": "openai/x", "api_key": WRONG_KEY}, ["HTTP 401"]),
    # ---------------------------------------------------------------- model_info
    ("model-info-wrong-master-key", MODEL_INFO, {"api_key": WRONG_KEY}, ["HTTP 401"]),
    ("model-info-unreachable", MODEL_INFO, {"api_url": UNREACHABLE}, ["cannot reach"]),
    ("model-info-unknown-option", MODEL_INFO, {"model": "x"}, ["Unsupported parameters", "model"]),
    # ---------------------------------------------------------------- key_sync
    ("sync-no-portal-db", KEY_SYNC, {}, ["portal_db_url is required"]),
    ("sync-portal-db-unreachable", KEY_SYNC, {"portal_db_url": "postgresql://nobody@127.0.0.1:9/none"},
     ["Cannot connect to the portal database"]),
    ("sync-deactivate-type", KEY_SYNC, {"portal_db_url": PORTAL_DSN, "deactivate": "maybe"}, ["deactivate", "bool"]),
    ("sync-wrong-master-key", KEY_SYNC, {"portal_db_url": PORTAL_DSN, "api_key": WRONG_KEY}, ["HTTP 401"]),
    # ---------------------------------------------------------------- portal_user
    ("portal-user-nobody", PORTAL_USER, {"portal_db_url": PORTAL_DSN}, ["one of the following is required", "username"]),
    ("portal-user-two-ids", PORTAL_USER, {"username": f"{P}-lead", "email": "x@example.com", "portal_db_url": PORTAL_DSN},
     ["mutually exclusive", "username", "email"]),
    ("portal-user-role-choice", PORTAL_USER, {"username": f"{P}-lead", "role": "superuser", "portal_db_url": PORTAL_DSN}, ["role", "superuser"]),
    ("portal-user-state-choice", PORTAL_USER, {"username": f"{P}-lead", "state": "gone", "portal_db_url": PORTAL_DSN}, ["state", "gone"]),
    ("portal-user-unknown", PORTAL_USER, {"username": f"{P}-nobody", "portal_db_url": PORTAL_DSN}, [f"Portal user '{P}-nobody' not found"]),
    ("portal-user-db-unreachable", PORTAL_USER, {"username": f"{P}-lead", "portal_db_url": "postgresql://nobody@127.0.0.1:9/none"},
     ["Cannot connect to the portal database"]),
    # ---------------------------------------------------------------- capacity_check
    ("cap-no-keys", CAPACITY, {"api_keys": [], "model": "stub-model"}, ["api_keys must hold at least one non-empty key"]),
    ("cap-attendees", CAPACITY, {"api_keys": ["sk-x"], "model": "stub-model", "attendees": 0}, ["attendees must be at least 1"]),
    ("cap-error-rate", CAPACITY, {"api_keys": ["sk-x"], "model": "stub-model", "max_error_rate": 2}, ["max_error_rate must be between 0 and 1"]),
    ("cap-ramp-up", CAPACITY, {"api_keys": ["sk-x"], "model": "stub-model", "ramp_up": -1}, ["ramp_up must be >= 0"]),
    ("cap-missing-model", CAPACITY, {"api_keys": ["sk-x"]}, ["missing required arguments: model"]),
    ("cap-attendees-type", CAPACITY, {"api_keys": ["sk-x"], "model": "stub-model", "attendees": "ten"}, ["attendees", "int"]),
    ("cap-bad-url", CAPACITY, {"api_keys": ["sk-x"], "model": "stub-model", "api_url": "ftp://127.0.0.1/x"}, ["api_url"]),
    # ---------------------------------------------------------------- inference_service_info (reads only: nothing to leave behind)
    ("isvc-empty-namespace", ISVC, {"namespaces": ["llm-hosting", ""], "host": UNREACHABLE}, ["namespaces must name at least one namespace"]),
    ("isvc-probe-type", ISVC, {"probe": "maybe", "host": UNREACHABLE}, ["probe", "bool"]),
    ("isvc-no-kubeconfig", ISVC, {"kubeconfig": "/nonexistent/kubeconfig"}, ["Cannot read the kubeconfig", "/nonexistent/kubeconfig"]),
    ("isvc-unreachable", ISVC, {"host": UNREACHABLE, "api_key": "sha256~token"}, ["InferenceService", "127.0.0.1", "port=9"]),
    ("isvc-unknown-option", ISVC, {"namespace": "llm-hosting"}, ["Unsupported parameters", "namespace"]),
]
NEEDS_PROXY_URL = {MODEL, MODEL_INFO, VK, VKS, VKI, KEY_SYNC}


def sql(dsn: str, query: str, args=None):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


@pytest.fixture(scope="module")
def mod_proxy(proxy_factory):
    return proxy_factory(database="reliability_module_bad_input")


@pytest.fixture(scope="module")
def portal_dsn(pg_server):
    """A portal database with one user (no admin role) and one active portal key whose proxy key does not exist."""
    dsn = pg_server.create_database("reliability_module_portal")
    sql(dsn, PORTAL_SCHEMA.read_text())
    user = sql(dsn, "INSERT INTO users (username, email, oauth_id, roles) VALUES (%s, %s, %s, %s) RETURNING id::text",
               (f"{P}-lead", f"{P}-lead@example.com", f"{P}-lead", ["user"]))[0][0]
    sql(dsn, "INSERT INTO api_keys (user_id, name, key_hash, key_prefix) VALUES (%s, 'orphan', %s, 'sk-...')", (user, "0" * 64))
    return dsn


def snapshot(mod_proxy, portal_dsn) -> dict:
    return {
        "keys": db_value(mod_proxy.dsn, 'SELECT count(*) FROM "LiteLLM_VerificationToken"'),
        "deleted_keys": db_value(mod_proxy.dsn, 'SELECT count(*) FROM "LiteLLM_DeletedVerificationToken"'),
        "models": db_value(mod_proxy.dsn, 'SELECT count(*) FROM "LiteLLM_ProxyModelTable"'),
        "key_rows": db_value(mod_proxy.dsn, 'SELECT coalesce(md5(string_agg(t::text, \'|\' ORDER BY token)), \'\') FROM "LiteLLM_VerificationToken" t'),
        "portal_users": sql(portal_dsn, "SELECT username, roles, is_active FROM users ORDER BY username"),
        "portal_keys": sql(portal_dsn, "SELECT key_hash, is_active, revoked_at FROM api_keys ORDER BY key_hash"),
    }


@pytest.fixture(scope="module")
def runs(mod_proxy, portal_dsn, ansible_env, tmp_path_factory):
    """Run every case in one playbook; return ``(results by case id, snapshot before, snapshot after, output)``."""
    status, data = mod_proxy.admin("POST", "/key/generate", {"key_alias": f"{P}-existing", "max_budget": 3})
    assert status == 200, data
    before = snapshot(mod_proxy, portal_dsn)
    tasks = []
    for i, (case_id, module, options, dummy) in enumerate(CASES):
        tasks.append({"name": case_id, module: options, "register": f"r{i}", "ignore_errors": True})
    names = ", ".join(f"r{i}" for i in range(len(CASES)))
    d = tmp_path_factory.mktemp("module-bad-input")
    out_file = d / "results.json"
    tasks.append({"name": "Save the results", "ansible.builtin.copy": {"content": "{{ [" + names + "] | to_json }}", "dest": str(out_file),
                                                                       "mode": "0600"}, "no_log": True})
    playbook = [{"hosts": "localhost", "gather_facts": False, "connection": "local", "vars": {"portal_dsn": portal_dsn}, "tasks": tasks}]
    (d / "play.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
    env = dict(ansible_env, LITEMAAS_PROXY_URL=mod_proxy.url, LITEMAAS_MASTER_KEY=mod_proxy.master_key)
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", str(d / "play.yml")], env=env, cwd=str(d), capture_output=True, text=True,
                          timeout=600, check=False)
    if not out_file.exists():
        raise AssertionError(f"playbook did not run:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    results = dict(zip([c[0] for c in CASES], json.loads(out_file.read_text())))
    return results, before, snapshot(mod_proxy, portal_dsn), proc.stdout + proc.stderr


@pytest.mark.parametrize("case_id,module,options,words", CASES, ids=[c[0] for c in CASES])
def test_bad_option_fails_with_a_one_line_message(runs, case_id, module, options, words):
    res = runs[0][case_id]
    assert res.get("failed") is True, res
    msg = res.get("msg")
    assert isinstance(msg, str) and msg.strip(), res
    assert "\n" not in msg.strip(), f"message is not one line: {msg!r}"
    assert "Traceback" not in msg and "MODULE FAILURE" not in msg, msg
    for word in words:
        assert word.lower() in msg.lower(), (word, msg)


def test_nothing_was_created_or_changed(runs, mod_proxy):
    results, before, after, output = runs
    print("\n" + "\n".join(f"{case_id}: {res.get('msg')}" for case_id, res in results.items()))  # the messages, for review with -s
    assert after == before
    # No key, model or alias of the cases exists on the proxy.
    assert db_value(mod_proxy.dsn, 'SELECT count(*) FROM "LiteLLM_VerificationToken" WHERE key_alias LIKE %s AND key_alias <> %s',
                    f"{P}-%", f"{P}-existing") == 0
    assert db_value(mod_proxy.dsn, 'SELECT count(*) FROM "LiteLLM_ProxyModelTable" WHERE model_name LIKE %s', f"{P}-%") == 0
    assert WRONG_KEY not in output, "a key given as api_key must not be displayed"


def test_every_module_is_covered():
    modules = {p.stem for p in (Path(__file__).resolve().parents[2] / "plugins" / "modules").glob("*.py") if p.stem != "__init__"}
    covered = {c[1].rsplit(".", 1)[1] for c in CASES}
    assert modules <= covered, f"modules without bad-input cases: {sorted(modules - covered)}"

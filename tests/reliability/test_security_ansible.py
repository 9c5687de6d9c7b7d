"""No secret in ``ansible-playbook -vvv`` output, and rendered manifests keep secrets only in Secrets.

- Every module (virtual_key create/regenerate/check, virtual_keys, virtual_key_info, model with model_api_key and with
  litellm_params.api_key, model_info, key_sync, portal_user, capacity_check, failing calls) runs in one playbook at -vvv
  against the live proxy and a portal database in the real PostgreSQL.
- The workshop keys role (playbooks/workshop_keys.yml), the capacity check, models, key_sync and portal_admins playbooks run
  at -vvv against the live proxy (and a stand-in for the portal's model sync endpoint); playbooks/local.yml runs at -vvv.
- The deploy role and the monitoring role render (no cluster) at -vvv with every secret pinned to a known value, and
  once with generated secrets read back from the render; no non-Secret manifest holds a secret value, and every
  secret environment variable comes from a secretKeyRef. The one exception is OpenShift's OAuthClient (see below).
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.integration.modules.conftest import sql
from tests.roles.conftest import proxy_source_snapshot

REPO = Path(__file__).resolve().parents[2]
PORTAL_SCHEMA = REPO / "tests" / "integration" / "modules" / "portal_schema.sql"
OPENSHIFT_SCHEMAS = REPO / "tests" / "roles" / "schemas" / "openshift-kinds.json"
# A full virtual key or master key (sk- and at least 16 characters); masked forms (sk-...abcd) do not match.
FULL_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")


def tag() -> str:
    return uuid.uuid4().hex[:8]


def assert_no_secret(output: str, secrets: dict) -> None:
    assert len(output) > 2000 and "ESTABLISH LOCAL CONNECTION" in output, "suspiciously little output: was -vvv applied?"
    for name, value in secrets.items():
        assert value and value not in output, f"{name} appears in the playbook output"


def run_playbook(env: dict, args: list, cwd: Path, timeout: int = 600) -> tuple:
    proc = subprocess.run(["ansible-playbook", "-vvv", *args], cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def private_vars(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return f"@{path}"


# --------------------------------------------------------------------------------------------------------------------
# Modules


@pytest.fixture(scope="module")
def portal_db_password_url(pg_server):
    """A portal database (minimal schema) and a URL for it that carries a password (the server trusts loopback, so the
    password is not checked; it is there to be hidden)."""
    import psycopg2

    dsn = pg_server.create_database("security_portal")
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(PORTAL_SCHEMA.read_text())
    conn.close()
    password = "pgpass-" + uuid.uuid4().hex
    user_part = dsn.split("://", 1)[1].split("@", 1)[0]
    return dsn, dsn.replace(f"://{user_part}@", f"://{user_part}:{password}@", 1), password


def test_modules_print_no_secret_at_vvv(proxy, ansible_env, portal_db_password_url, tmp_path, stub_upstream):
    dsn, portal_url, db_password = portal_db_password_url
    t = tag()
    user_id = sql(dsn, "INSERT INTO users (username, email, oauth_id, roles) VALUES (%s, %s, %s, %s) RETURNING id::text AS id",
                  (f"{t}-u", f"{t}-u@example.com", f"{t}-u", ["user"]))[0]["id"]
    secrets = {
        "master key": proxy.master_key,
        "portal database password": db_password,
        "portal JWT secret": "jwt-secret-" + uuid.uuid4().hex,
        "model_api_key": "sk-upstream-a-" + uuid.uuid4().hex,
        "litellm_params.api_key": "sk-upstream-b-" + uuid.uuid4().hex,
        "wrong master key": "sk-wrong-master-" + uuid.uuid4().hex,
    }
    conn = {"api_url": proxy.url, "api_key": "{{ master_key }}"}
    tasks = [
        {"rhpds.litemaas.virtual_key": {**conn, "key_alias": f"{t}-a", "models": ["stub-model"], "max_budget": 5}},
        {"rhpds.litemaas.virtual_key": {**conn, "key_alias": f"{t}-a", "regenerate": True}},
        {"rhpds.litemaas.virtual_key": {**conn, "key_alias": f"{t}-a", "max_budget": 6}, "check_mode": True, "diff": True},
        {"rhpds.litemaas.virtual_key": {**conn, "key_alias": f"{t}-a", "max_budget": 6}, "diff": True},
        {"rhpds.litemaas.virtual_keys": {**conn, "keys": [{"key_alias": f"{t}-b1", "models": ["stub-model"]}, {"key_alias": f"{t}-b2"}]}},
        {"rhpds.litemaas.virtual_key_info": {**conn, "key_alias": f"{t}-a"}},
        {"rhpds.litemaas.virtual_key_info": conn},
        {"rhpds.litemaas.model": {**conn, "model_name": f"{t}-ma", "litellm_params": {"model": "openai/stub-model", "api_base": stub_upstream.url},
                                  "model_api_key": "{{ upstream_a }}"}, "diff": True},
        {"rhpds.litemaas.model": {**conn, "model_name": f"{t}-mb", "litellm_params": {"model": "openai/stub-model", "api_base": stub_upstream.url,
                                                                                      "api_key": "{{ upstream_b }}"}}, "diff": True},
        {"rhpds.litemaas.model": {**conn, "model_name": f"{t}-mb", "litellm_params": {"model": "openai/stub-model", "api_base": stub_upstream.url,
                                                                                      "api_key": "{{ upstream_b }}"}, "update_api_key": True},
         "diff": True},
        {"rhpds.litemaas.model_info": conn},
        {"rhpds.litemaas.key_sync": {**conn, "portal_db_url": "{{ portal_url }}", "import_keys": True, "alias_prefix": f"{t}-"},
         "check_mode": True, "diff": True},
        {"rhpds.litemaas.key_sync": {**conn, "portal_db_url": "{{ portal_url }}"}},
        {"rhpds.litemaas.portal_user": {"username": f"{t}-u", "role": "admin", "portal_db_url": "{{ portal_url }}"}, "diff": True},
        {"rhpds.litemaas.capacity_check": {"api_url": proxy.url, "api_keys": ["{{ r1.key }}", "{{ r4.virtual_keys[0].key }}"], "model": "stub-model",
                                           "attendees": 2, "requests_per_attendee": 1}},
        # Failures: an unreachable portal API (the JWT is minted from the secret first), a wrong master key, an unreachable
        # proxy, a wrong portal database.
        {"rhpds.litemaas.portal_user": {"user_id": user_id, "role": "admin", "portal_url": "http://127.0.0.1:9", "portal_jwt_secret": "{{ jwt }}",
                                        "portal_jwt_user_id": user_id}},
        {"rhpds.litemaas.virtual_key": {"api_url": proxy.url, "api_key": "{{ wrong }}", "key_alias": f"{t}-x"}},
        {"rhpds.litemaas.virtual_key_info": {"api_url": "http://127.0.0.1:9", "api_key": "{{ master_key }}", "key_alias": f"{t}-a"}},
        {"rhpds.litemaas.portal_user": {"username": f"{t}-u", "portal_db_url": "{{ portal_url | replace('security_portal', 'no_such_db') }}"}},
    ]
    body, names = [], []
    for i, task in enumerate(tasks):
        task = {"name": f"task {i}", **task, "register": f"r{i}", "ignore_errors": True}
        body.append(task)
        names.append(f"r{i}")
    results = tmp_path / "results.json"
    body.append({"name": "Save the results", "ansible.builtin.copy": {"content": "{{ [" + ", ".join(names) + "] | to_json }}", "dest": str(results),
                                                                      "mode": "0600"}, "no_log": True})
    play = [{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": body}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    extra = private_vars(tmp_path / "vars.json", {"master_key": proxy.master_key, "upstream_a": secrets["model_api_key"],
                                                  "upstream_b": secrets["litellm_params.api_key"], "portal_url": portal_url,
                                                  "jwt": secrets["portal JWT secret"], "wrong": secrets["wrong master key"]})
    env = dict(ansible_env)
    for name in ("LITEMAAS_PROXY_URL", "LITEMAAS_MASTER_KEY", "LITELLM_MASTER_KEY"):
        env.pop(name, None)
    rc, output = run_playbook(env, ["-i", "localhost,", "play.yml", "-e", extra], tmp_path)
    res = json.loads(results.read_text())
    # The tasks did what they should (a secret-free output of tasks that all failed would prove nothing).
    ok = [i for i, r in enumerate(res) if not r.get("failed")]
    assert ok == list(range(15)), [(i, r.get("msg")) for i, r in enumerate(res) if r.get("failed")]
    assert [bool(res[i].get("failed")) for i in (15, 16, 17, 18)] == [True, True, True, True]
    assert res[0]["key"].startswith("sk-") and res[1]["key"].startswith("sk-") and res[1]["key"] != res[0]["key"]
    assert len(res[4]["virtual_keys"]) == 2 and all(k["key"].startswith("sk-") for k in res[4]["virtual_keys"])
    assert res[14]["capacity_check"]["requests"] == 2 and res[14]["capacity_check"]["error_rate"] == 0, res[14]
    secrets.update({"created key": res[0]["key"], "regenerated key": res[1]["key"]})
    for n, item in enumerate(res[4]["virtual_keys"]):
        secrets[f"bulk key {n}"] = item["key"]
    # The upstream keys really went to the proxy (so they were in the module's hands).
    status, data = proxy.admin("GET", "/model/info")
    assert {f"{t}-ma", f"{t}-mb"} <= {m["model_name"] for m in data["data"]}
    assert_no_secret(output, secrets)
    assert portal_url not in output
    assert not FULL_KEY.findall(output), FULL_KEY.findall(output)[:5]


# --------------------------------------------------------------------------------------------------------------------
# Roles and playbooks against the live proxy


def test_workshop_keys_role_and_capacity_playbook_print_no_secret_at_vvv(proxy, ansible_env, tmp_path):
    guid = "s" + tag()[:6]
    store = tmp_path / "store"
    common = {"guid": guid, "num_users": 3, "litellm_url": proxy.url + "/", "litellm_master_key": proxy.master_key,
              "ocp4_workload_litellm_virtual_keys_models": ["stub-model"], "ocp4_workload_litellm_virtual_keys_store": "file",
              "ocp4_workload_litellm_virtual_keys_store_dir": str(store), "ocp4_workload_litellm_virtual_keys_max_budget": 5,
              "ocp4_workload_litellm_virtual_keys_duration": "2d"}
    outputs = []
    for n, action in enumerate(("provision", "extend")):
        rc, out = run_playbook(ansible_env, ["rhpds.litemaas.workshop_keys", "-e", private_vars(tmp_path / f"ws{n}.json", {**common, "ACTION": action})],
                               tmp_path)
        assert rc == 0, out[-4000:]
        outputs.append(out)
    keys = json.loads((store / f"{guid}.json").read_text())["keys"]
    assert len(keys) == 3
    assert stat.S_IMODE((store / f"{guid}.json").stat().st_mode) == 0o600
    secrets = {"master key": proxy.master_key}
    for alias, item in keys.items():
        secrets[alias] = item["key"] if isinstance(item, dict) else item
    assert all(v.startswith("sk-") for v in secrets.values())
    # The capacity check with its own temporary keys (created, used and deleted by the play).
    cap = {"litemaas_proxy_url": proxy.url, "litemaas_master_key": proxy.master_key, "capacity_check_model": "stub-model",
           "capacity_check_attendees": 2, "capacity_check_requests_per_attendee": 1}
    rc, out = run_playbook(ansible_env, ["rhpds.litemaas.capacity_check", "-e", private_vars(tmp_path / "cap.json", cap)], tmp_path)
    assert rc == 0, out[-4000:]
    outputs.append(out)
    rc, out = run_playbook(ansible_env, ["rhpds.litemaas.workshop_keys", "-e", private_vars(tmp_path / "ws-destroy.json", {**common, "ACTION": "destroy"})],
                           tmp_path)
    assert rc == 0, out[-4000:]
    outputs.append(out)
    for out in outputs:
        assert_no_secret(out, secrets)
        assert not FULL_KEY.findall(out), FULL_KEY.findall(out)[:5]


# --------------------------------------------------------------------------------------------------------------------
# Rendered manifests

PINNED = {
    "ocp4_workload_litemaas_litellm_master_key": "sk-pinnedmaster" + uuid.uuid4().hex,
    "ocp4_workload_litemaas_litellm_salt_key": "salt-" + uuid.uuid4().hex,
    "ocp4_workload_litemaas_litellm_ui_password": "uipass-" + uuid.uuid4().hex,
    "ocp4_workload_litemaas_postgres_admin_password": "pgadmin-" + uuid.uuid4().hex,
    "ocp4_workload_litemaas_postgres_portal_password": "pgportal-" + uuid.uuid4().hex,
    "ocp4_workload_litemaas_postgres_proxy_password": "pgproxy-" + uuid.uuid4().hex,
    "ocp4_workload_litemaas_redis_password": "redispass-" + uuid.uuid4().hex,
    "ocp4_workload_litemaas_jwt_secret": "jwtsecret-" + uuid.uuid4().hex,
    "ocp4_workload_litemaas_admin_api_key": "ltm_admin_" + uuid.uuid4().hex,
    "ocp4_workload_litemaas_oauth_client_secret": "oauthsecret-" + uuid.uuid4().hex,
    "ocp4_workload_litemaas_k8s_api_key": "sha256~k8stoken" + uuid.uuid4().hex,
    "ocp4_workload_litemaas_monitoring_grafana_admin_password": "grafana-" + uuid.uuid4().hex,
}
RENDERS = {
    # Every secret pinned; the proxy built from the collection, OAuthClient mode.
    "pinned": dict(PINNED),
    # Generated secrets (read back from the render), upstream LiteLLM, ServiceAccount OAuth mode.
    "generated": {"ocp4_workload_litemaas_use_upstream_litellm": True, "ocp4_workload_litemaas_oauth_client_mode": "serviceaccount"},
}
# The playbooks that render (in this order: the day-2 ones read what the deploy render left); the "generated" render
# runs only the first two (the day-2 playbooks do not depend on the proxy flavour and each -vvv run costs seconds).
DAY2 = [
    ("deploy.yml", {}),
    ("monitoring.yml", {}),
    ("key_cleanup.yml", {"litemaas_key_cleanup_alias_prefixes": ["virtkey-"], "litemaas_key_cleanup_image": "quay.io/example/litemaas-proxy:1.0"}),
    ("backup.yml", {"litemaas_backup_schedule": "0 3 * * *"}),
    ("restore.yml", {"litemaas_restore_backup": "20260301-020000"}),
    ("scale.yml", {"litemaas_scale": {"proxy": 4}}),
    ("upgrade.yml", {}),
]
# Environment variable names that carry a secret (must come from a secretKeyRef).
SECRET_ENV = re.compile(r"PASSWORD|SECRET|_KEY$|_KEYS$|TOKEN|_AUTH$|DATABASE_URL|REDIS_URL|^PG|POSTGRES", re.I)
# ... except these, which name a non-secret value.
NOT_SECRET_ENV = {"PGDATA", "POSTGRESQL_DATABASE", "POSTGRES_DB", "POSTGRESQL_USER", "POSTGRES_USER", "PGUSER", "PGDATABASE", "PGHOST", "PGPORT",
                  "REDIS_HOST", "REDIS_PORT", "LITELLM_KEY_HEADER_NAME"}


@pytest.fixture(scope="module")
def renders(ansible_env, work_dir):
    env = dict(ansible_env, KUBECONFIG=os.devnull)
    env.pop("K8S_AUTH_KUBECONFIG", None)
    base = work_dir / "security-render"
    base.mkdir(parents=True, exist_ok=True)
    source = proxy_source_snapshot(base)

    def render(name, extra):
        out_dir = base / name
        vars_arg = private_vars(base / f"{name}.vars.json", {"ocp4_workload_litemaas_render_dir": str(out_dir),
                                                             "ocp4_workload_litemaas_proxy_source_dir": str(source), **extra})
        outputs = []
        for playbook, more in (DAY2 if name == "pinned" else DAY2[:2]):
            args = [str(REPO / "playbooks" / playbook), "-e", vars_arg] + [a for k, v in more.items() for a in ("-e", json.dumps({k: v}))]
            rc, out = run_playbook(env, args, REPO)
            assert rc == 0, f"{playbook}:\n{out[-6000:]}"
            outputs.append(out)
        return {"dir": out_dir, "output": "\n".join(outputs), "extra": extra}

    with ThreadPoolExecutor(max_workers=len(RENDERS)) as pool:
        futures = {name: pool.submit(render, name, extra) for name, extra in RENDERS.items()}
        return {name: f.result() for name, f in futures.items()}


def documents(directory: Path) -> list:
    out = []
    for path in sorted(directory.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((str(path.relative_to(directory)), doc))
    return out


def secret_values(docs: list) -> dict:
    values = {}
    for dummy, doc in docs:
        if doc["kind"] != "Secret":
            continue
        for key, value in (doc.get("data") or {}).items():
            values[f"{doc['metadata']['name']}/{key}"] = base64.b64decode(value).decode()
        for key, value in (doc.get("stringData") or {}).items():
            values[f"{doc['metadata']['name']}/{key}"] = value
    return values


def secrets_of(run: dict, docs: list) -> dict:
    """Every secret of a render: the pinned inputs, the generated values read back, and every value of every Secret."""
    secrets = {k: v for k, v in run["extra"].items() if k in PINNED}
    generated = run["dir"] / ".litemaas-secrets"
    if generated.exists():
        secrets.update({f"generated {k}": str(v) for k, v in (yaml.safe_load(generated.read_text()) or {}).items()})
    for where, value in secret_values(docs).items():
        # Whole files (redis.conf) and URLs are checked through the passwords they contain; short values are not secrets.
        if len(value) >= 12 and "\n" not in value:
            secrets[where] = value
    return secrets


@pytest.mark.parametrize("name", list(RENDERS))
def test_render_prints_no_secret_at_vvv(renders, name):
    run = renders[name]
    docs = documents(run["dir"])
    secrets = secrets_of(run, docs)
    assert len(secrets) >= 10
    if name == "pinned":
        values = set(secret_values(docs).values())
        for var in ("ocp4_workload_litemaas_litellm_master_key", "ocp4_workload_litemaas_redis_password", "ocp4_workload_litemaas_jwt_secret",
                    "ocp4_workload_litemaas_admin_api_key", "ocp4_workload_litemaas_oauth_client_secret",
                    "ocp4_workload_litemaas_monitoring_grafana_admin_password"):
            assert PINNED[var] in values, f"{var} was not used: the test would prove nothing"
    assert_no_secret(run["output"], secrets)
    assert not FULL_KEY.findall(run["output"]), FULL_KEY.findall(run["output"])[:5]


def test_oauthclient_secret_field_is_an_unavoidable_exception():
    """OpenShift's OAuthClient (oauth.openshift.io/v1) holds its secret inline: the schema has a plain string ``secret``
    and no way to refer to a Secret, so this one object carries the client secret. It is cluster-scoped and readable only
    by cluster administrators; the role writes its render file with mode 0600 like the Secrets."""
    document = json.loads(OPENSHIFT_SCHEMAS.read_text())
    props = document["definitions"][document["roots"]["OAuthClient"]]["properties"]
    assert props["secret"]["type"] == "string"
    # additionalSecrets is inline too (a list of strings); nothing in the object can point at a Secret.
    assert props["additionalSecrets"]["items"]["type"] == "string"
    reachable, todo = set(), [document["roots"]["OAuthClient"]]
    while todo:
        name = todo.pop()
        if name not in reachable:
            reachable.add(name)
            todo.extend(re.findall(r'"\$ref": "#/definitions/([^"]+)"', json.dumps(document["definitions"][name])))
    assert len(reachable) > 3  # ObjectMeta and friends: the walk works
    assert not [n for n in reachable if "Secret" in n or "Selector" in n], "OAuthClient can now refer to a Secret: keep the secret there instead"
    assert not re.search(r'"secret\w*Ref"', json.dumps([document["definitions"][n] for n in reachable]))


@pytest.mark.parametrize("name", list(RENDERS))
def test_secrets_live_only_in_secrets(renders, name):
    run = renders[name]
    docs = documents(run["dir"])
    secrets = secrets_of(run, docs)
    kinds = {doc["kind"] for dummy, doc in docs}
    assert {"Secret", "ConfigMap", "Deployment", "Route"} <= kinds, kinds
    if name == "pinned":
        assert {"BuildConfig", "OAuthClient", "CronJob", "Job"} <= kinds, kinds
        assert {"day2/key-cleanup", "day2/backup", "day2/restore"} <= {str(Path(rel).parent) for rel, dummy in docs}
    oauth_secret = secrets.get("ocp4_workload_litemaas_oauth_client_secret") or secrets.get("generated oauth_client_secret")
    checked = 0
    for rel, doc in docs:
        if doc["kind"] == "Secret":
            continue
        doc = dict(doc)
        if doc["kind"] == "OAuthClient":
            assert doc.pop("secret") == oauth_secret  # see test_oauthclient_secret_field_is_an_unavoidable_exception
            assert stat.S_IMODE((run["dir"] / rel).stat().st_mode) == 0o600
        text = json.dumps(doc)
        for where, value in secrets.items():
            assert value not in text, f"{where} appears in {doc['kind']}/{doc['metadata']['name']} ({rel})"
        checked += 1
    assert checked >= 20
    # Environment variables that carry secrets come from Secrets, never inline values.
    env_checked = 0
    secret_names = {doc["metadata"]["name"] for dummy, doc in docs if doc["kind"] == "Secret"}
    for dummy, doc in docs:
        spec = None
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            spec = ((doc.get("spec") or {}).get("template") or {}).get("spec")  # scale patches carry only replicas
        elif doc["kind"] == "CronJob":
            spec = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        if doc["kind"] == "BuildConfig":
            spec = {"containers": [{"name": "build", "env": ((doc["spec"].get("strategy") or {}).get("dockerStrategy") or {}).get("env") or []}]}
        if not spec:
            continue
        for container in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
            for var in container.get("env") or []:
                if SECRET_ENV.search(var["name"]) and var["name"] not in NOT_SECRET_ENV:
                    assert "value" not in var and "secretKeyRef" in (var.get("valueFrom") or {}), \
                        f"{doc['kind']}/{doc['metadata']['name']} container {container['name']}: {var['name']} must use valueFrom.secretKeyRef"
                    assert var["valueFrom"]["secretKeyRef"]["name"] in secret_names, var
                    env_checked += 1
            for source in container.get("envFrom") or []:
                assert "configMapRef" not in source or not any(v in json.dumps(source) for v in secrets.values())
    assert env_checked >= 5


@pytest.fixture
def fake_portal(proxy, portal_db_password_url):
    """The portal backend's stand-in (tests/support/portal_backend.py: its model sync, recording each call's
    Authorization header); the test gives it its admin key."""
    from tests.support.portal_backend import PortalBackend

    portal = PortalBackend(portal_db_password_url[0], proxy.url, proxy.master_key, litellm_database_url=proxy.dsn).start()
    yield portal
    portal.stop()


def test_day2_playbooks_print_no_secret_at_vvv(proxy, ansible_env, portal_db_password_url, tmp_path, stub_upstream, fake_portal):
    """models.yml (model_api_key and litellm_params.api_key in a loop), key_sync.yml and portal_admins.yml with every
    connection secret given as a variable (no cluster discovery)."""
    dsn, portal_url, db_password = portal_db_password_url
    t = tag()
    sql(dsn, "INSERT INTO users (username, email, oauth_id, roles) VALUES (%s, %s, %s, %s)", (f"{t}-lead", f"{t}-lead@example.com", f"{t}-lead", ["user"]),
        fetch=False)
    secrets = {"master key": proxy.master_key, "portal database password": db_password, "model_api_key": "sk-up-a-" + uuid.uuid4().hex,
               "litellm_params.api_key": "sk-up-b-" + uuid.uuid4().hex, "portal admin key": "ltm_admin_" + uuid.uuid4().hex,
               "portal JWT secret": "jwt-" + uuid.uuid4().hex}
    conn = {"litemaas_proxy_url": proxy.url, "litemaas_master_key": proxy.master_key, "litemaas_portal_db_url": portal_url,
            "litemaas_portal_url": fake_portal.url, "litemaas_portal_admin_key": secrets["portal admin key"],
            "litemaas_portal_jwt_secret": secrets["portal JWT secret"], "litemaas_discover": False}
    models = {"litemaas_models": [
        {"model_name": f"{t}-a", "model": "openai/stub-model", "api_base": stub_upstream.url, "model_api_key": secrets["model_api_key"]},
        {"model_name": f"{t}-b", "litellm_params": {"model": "openai/stub-model", "api_base": stub_upstream.url, "api_key": secrets["litellm_params.api_key"]},
         "update_api_key": True},
    ], "litemaas_models_portal_sync": "always"}
    fake_portal.admin_api_keys = [secrets["portal admin key"]]
    runs = {
        "models": ["rhpds.litemaas.models", "-e", private_vars(tmp_path / "models.json", {**conn, **models})],
        "key_sync": ["rhpds.litemaas.key_sync", "-e", private_vars(tmp_path / "sync.json", {**conn, "litemaas_key_sync_import_keys": True,
                                                                                            "litemaas_key_sync_alias_prefix": f"{t}-"})],
        "portal_admins": ["rhpds.litemaas.portal_admins", "-e", private_vars(tmp_path / "admins.json", {
            **conn, "litemaas_portal_admins": [{"username": f"{t}-lead"}]})],
    }
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        futures = {name: pool.submit(run_playbook, ansible_env, args, tmp_path) for name, args in runs.items()}
        results = {name: f.result() for name, f in futures.items()}
    for name, (rc, output) in results.items():
        assert rc == 0, f"{name}:\n{output[-4000:]}"
        assert_no_secret(output, secrets)
        assert portal_url not in output
        assert not FULL_KEY.findall(output), (name, FULL_KEY.findall(output)[:5])
    # The playbooks did their work with those secrets.
    status, data = proxy.admin("GET", "/model/info")
    assert {f"{t}-a", f"{t}-b"} <= {m["model_name"] for m in data["data"]}
    assert sql(dsn, "SELECT roles FROM users WHERE username = %s", (f"{t}-lead",))[0]["roles"] == ["user", "admin"]
    assert [call[:2] for call in fake_portal.calls] == [("/api/v1/models/sync", f"Bearer {secrets['portal admin key']}")]


def test_local_platform_prints_no_secret_at_vvv(ansible_env, work_dir, stub_upstream):
    """playbooks/local.yml (PostgreSQL, Redis and the proxy as local processes, the model, three workshop keys and a
    request with each) at -vvv: neither the generated master key nor any workshop key is shown."""
    from tests.integration.local.test_local_platform import SUPERVISOR, Platform

    data_dir = work_dir / "security-local" / "data"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    plat = Platform(ansible_env, data_dir)
    try:
        vars_file = data_dir.parent / "vars.json"
        model = {"litemaas_local_model_url": stub_upstream.url, "litemaas_local_model_name": "stub-model"}
        rc, output = run_playbook(plat.env, [str(REPO / "playbooks" / "local.yml"), "-e", private_vars(vars_file, dict(plat.vars, **model))], REPO)
        assert rc == 0, output[-4000:]
        secrets = {f"workshop key {alias}": key for alias, key in plat.keys().items()}
        assert len(secrets) == 3
        for path in sorted((data_dir / "secrets").rglob("*")):
            if path.is_file() and path.suffix != ".json":
                secrets[f"secret file {path.name}"] = path.read_text().strip()
        assert "secret file master_key" in secrets
        assert_no_secret(output, secrets)
        assert not FULL_KEY.findall(output), FULL_KEY.findall(output)[:5]
    finally:
        subprocess.run([sys.executable, str(SUPERVISOR), "down", "--state-dir", str(data_dir)], capture_output=True, check=False)

"""Day-2 playbooks: syntax, render mode, guards; the backup and restore scripts run for real against PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
import pytest

from tests.playbooks.conftest import PLAYBOOKS, load_dir, recap
from tests.support import k8s_schemas
from tests.support.services import pg_bin

DAY2 = ["upgrade.yml", "scale.yml", "models.yml", "key_sync.yml", "portal_admins.yml", "backup.yml", "restore.yml", "key_cleanup.yml",
        "monitoring.yml", "capacity_check.yml"]


def test_every_day2_playbook_exists_and_is_documented():
    for name in DAY2:
        text = (PLAYBOOKS / name).read_text()
        assert text.startswith("---\n# "), name  # a header comment says what it does and how to run it
        assert "ansible-playbook rhpds.litemaas." + name[:-4] in text, name


def test_syntax(playbook):
    proc = playbook.run(DAY2[0], syntax=True, more=DAY2[1:])
    for name in DAY2:
        assert f"playbook: {PLAYBOOKS / name}" in proc.stdout


# ---------------------------------------------------------------- backup / restore

@pytest.fixture(scope="module")
def backup_render(playbook, work_dir):
    out = work_dir / "render-backup"
    first = playbook.run("backup.yml", {"ocp4_workload_litemaas_render_dir": str(out), "litemaas_backup_name": "nightly-1",
                                        "litemaas_backup_schedule": "0 3 * * *", "ocp4_workload_litemaas_namespace": "team-ai"})
    playbook.run("restore.yml", {"ocp4_workload_litemaas_render_dir": str(out), "litemaas_restore_backup": "nightly-1",
                                 "ocp4_workload_litemaas_namespace": "team-ai"})
    return out, load_dir(out), first


def test_backup_renders_pvc_job_and_cronjob(backup_render):
    docs, first = backup_render[1:]
    kinds = {path: [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in objs] for path, objs in docs.items()}
    assert kinds == {
        "day2/backup/pvc.yaml": [("v1", "PersistentVolumeClaim", "litemaas-backup")],
        "day2/backup/job.yaml": [("batch/v1", "Job", "litemaas-backup-nightly-1")],
        "day2/backup/cronjob.yaml": [("batch/v1", "CronJob", "litemaas-backup")],
        "day2/restore/job.yaml": [("batch/v1", "Job", "litemaas-restore-nightly-1")],
    }
    job = docs["day2/backup/job.yaml"][0]
    pod = job["spec"]["template"]
    # The deploy role's NetworkPolicy admits pods named litemaas-backup to PostgreSQL.
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "litemaas-backup"
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["PGHOST"] == "litellm-postgres"
    assert env["PGPASSWORD"] == {"secretKeyRef": {"name": "litemaas-db", "key": "POSTGRES_PASSWORD"}}
    assert env["DATABASES"] == "litemaas_db litellm_db"
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "litemaas-backup"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert docs["day2/backup/cronjob.yaml"][0]["spec"]["concurrencyPolicy"] == "Forbid"
    assert "restore: ansible-playbook rhpds.litemaas.restore -e litemaas_restore_backup=nightly-1" in first.stdout.lower()


KEY_CLEANUP_VARS = {"ocp4_workload_litemaas_proxy_image": "quay.io/example/litemaas-proxy:1.2.3",
                    "litemaas_key_cleanup_alias_prefixes": ["virtkey-", "capacity-check-"], "litemaas_key_cleanup_metadata_key": "workshop"}


@pytest.fixture(scope="module")
def key_cleanup_render(playbook, work_dir):
    out = work_dir / "render-key-cleanup"
    first = playbook.run("key_cleanup.yml", dict(KEY_CLEANUP_VARS, ocp4_workload_litemaas_render_dir=str(out)))
    return out, first


def test_manifests_pass_their_api_servers_schema(backup_render, key_cleanup_render):
    """Backup, restore and key-cleanup objects against the schemas their API server uses (tests/support/k8s_schemas.py)."""
    k8s_schemas.assert_valid(backup_render[0], minimum=4)
    report = k8s_schemas.assert_valid(key_cleanup_render[0], minimum=3)
    assert report.validators_of("CronJob") == {f"kubernetes {k8s_schemas.K8S_VERSION}"}


def _script_and_env(job: dict) -> tuple:
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    return container["args"][0], env


def _psql(dsn, sql, params=None):
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def _run(script, env, backup_dir, pg_server):
    full = dict(os.environ, **env)
    full.update(BACKUP_DIR=str(backup_dir), PGHOST="127.0.0.1", PGPORT=str(pg_server.port), PGUSER=pg_server.user)
    full["PATH"] = str(Path(pg_bin("pg_dump")).parent) + os.pathsep + full["PATH"]
    return subprocess.run(["/bin/sh", "-c", script], env=full, capture_output=True, text=True, check=False, timeout=120)


def test_backup_and_restore_scripts_round_trip_real_databases(backup_render, pg_server, tmp_path):
    docs = backup_render[1]
    backup_script, backup_env = _script_and_env(docs["day2/backup/job.yaml"][0])
    restore_script, restore_env = _script_and_env(docs["day2/restore/job.yaml"][0])
    run = uuid.uuid4().hex[:6]
    dbs = [f"bk_portal_{run}", f"bk_proxy_{run}"]
    for db in dbs:
        pg_server.create_database(db)
        _psql(pg_server.dsn(db), "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one'), (2, 'two')")
    backups = tmp_path / "backups"
    backups.mkdir()

    proc = _run(backup_script, dict(backup_env, DATABASES=" ".join(dbs), BACKUP_NAME="first"), backups, pg_server)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (backups / "first").iterdir()) == ["CREATED", "SHA256SUMS", f"{dbs[0]}.dump", f"{dbs[1]}.dump"]
    assert "backup first complete" in proc.stdout

    # Damage both databases, then restore.
    for db in dbs:
        _psql(pg_server.dsn(db), "DELETE FROM t WHERE id = 1; UPDATE t SET v = 'changed'; INSERT INTO t VALUES (3, 'three')")
    proc = _run(restore_script, dict(restore_env, DATABASES=" ".join(dbs), BACKUP_NAME="first"), backups, pg_server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for db in dbs:
        assert _psql(pg_server.dsn(db), "SELECT id, v FROM t ORDER BY id") == [(1, "one"), (2, "two")]

    # A corrupted dump is refused before anything is restored.
    _psql(pg_server.dsn(dbs[0]), "INSERT INTO t VALUES (4, 'four')")
    with open(backups / "first" / f"{dbs[1]}.dump", "ab") as fh:
        fh.write(b"garbage")
    proc = _run(restore_script, dict(restore_env, DATABASES=" ".join(dbs), BACKUP_NAME="first"), backups, pg_server)
    assert proc.returncode != 0
    assert "FAILED" in proc.stdout + proc.stderr
    assert _psql(pg_server.dsn(dbs[0]), "SELECT count(*) FROM t") == [(3,)]

    # An unknown backup name lists what exists.
    proc = _run(restore_script, dict(restore_env, DATABASES=" ".join(dbs), BACKUP_NAME="nope"), backups, pg_server)
    assert proc.returncode == 2
    assert "backup nope not found; available: first" in proc.stderr


def test_backup_script_keeps_only_the_newest(backup_render, pg_server, tmp_path):
    backup_script, backup_env = _script_and_env(backup_render[1]["day2/backup/job.yaml"][0])
    db = f"bk_keep_{uuid.uuid4().hex[:6]}"
    pg_server.create_database(db)
    for name in ("b1", "b2", "b3"):
        proc = _run(backup_script, dict(backup_env, DATABASES=db, BACKUP_NAME=name, KEEP="2"), tmp_path, pg_server)
        assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b2", "b3"]


def test_restore_needs_confirmation_on_a_cluster(playbook):
    proc = playbook.run("restore.yml", {"litemaas_restore_backup": "nightly-1"}, expect_rc=2)
    assert "-e litemaas_restore_confirm=true" in proc.stdout
    assert recap(proc.stdout)["failed"] == 1


def test_backup_name_is_checked(playbook, render_dir):
    proc = playbook.run("backup.yml", {"ocp4_workload_litemaas_render_dir": str(render_dir), "litemaas_backup_name": "Bad_Name"}, expect_rc=2)
    assert "litemaas_backup_name must be lowercase letters" in proc.stdout


# ---------------------------------------------------------------- key cleanup

def test_key_cleanup_cronjob_runs_the_tool_from_the_proxy_image(playbook, key_cleanup_render, tmp_path):
    render_dir, first = key_cleanup_render
    docs = load_dir(render_dir)
    cron = docs["day2/key-cleanup/cronjob.yaml"][0]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "quay.io/example/litemaas-proxy:1.2.3"
    assert container["command"] == ["python", "-m", "litemaas_proxy.tools.key_cleanup"]
    assert container["args"] == ["--alias-prefix", "virtkey-", "--alias-prefix", "capacity-check-"]
    text = (render_dir / "day2/key-cleanup/cronjob.yaml").read_text()
    assert "pip" not in text
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["PROXY_URL"] == "http://litellm.litemaas.svc:4000"
    assert env["LITELLM_MASTER_KEY"] == {"secretKeyRef": {"name": "litellm-secret", "key": "LITELLM_MASTER_KEY"}}
    assert env["PORTAL_DATABASE_URL"] == {"secretKeyRef": {"name": "litemaas-db", "key": "DATABASE_URL"}}
    assert env["KEY_CLEANUP_METADATA_KEY"] == "workshop"
    policies = {p["metadata"]["name"]: p for p in docs["day2/key-cleanup/networkpolicy.yaml"]}
    assert set(policies) == {"litemaas-key-cleanup-to-proxy", "litemaas-key-cleanup-to-postgres"}
    frm = policies["litemaas-key-cleanup-to-proxy"]["spec"]["ingress"][0]["from"][0]
    assert frm == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": pod["metadata"]["labels"]["app.kubernetes.io/name"]}}}
    again = playbook.run("key_cleanup.yml", dict(KEY_CLEANUP_VARS, ocp4_workload_litemaas_render_dir=str(render_dir)))
    assert recap(first.stdout)["changed"] > 0 and recap(again.stdout)["changed"] == 0
    copy = tmp_path / "render"
    shutil.copytree(render_dir, copy)
    playbook.run("key_cleanup.yml", {"ocp4_workload_litemaas_render_dir": str(copy), "litemaas_key_cleanup_state": "absent"})
    assert not (copy / "day2/key-cleanup").exists()


def test_the_tool_ships_in_the_proxy_package(tmp_path):
    """The CronJob runs `python -m litemaas_proxy.tools.key_cleanup` from the proxy image, so pip must install the subpackage."""
    src = PLAYBOOKS.parent / "files" / "proxy"
    build = tmp_path / "src"
    shutil.copytree(src, build, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(build)],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (target / "litemaas_proxy" / "tools" / "key_cleanup.py").exists()


# ---------------------------------------------------------------- scale

def test_scale_renders_replica_patches_and_names_the_deploy_variables(playbook, render_dir):
    proc = playbook.run("scale.yml", {"ocp4_workload_litemaas_render_dir": str(render_dir), "litemaas_scale": {"proxy": 5, "frontend": 3}})
    docs = load_dir(render_dir)["day2/scale/deployment.yaml"]
    assert [(d["metadata"]["name"], d["spec"]["replicas"]) for d in docs] == [("litellm-frontend", 3), ("litellm", 5)]
    # Server-side-apply patches: types and field names are checked, required fields come from the live object.
    k8s_schemas.assert_valid(render_dir, minimum=2, patches=["day2/scale/*"])
    assert "ocp4_workload_litemaas_ha_frontend_replicas=3 ocp4_workload_litemaas_ha_litellm_replicas=5" in proc.stdout


@pytest.mark.parametrize("scale, message", [
    ({"backend": 2}, "The portal backend must stay at 1 replica while OAuth login is on"),
    ({"redis": 2, "proxy": -1}, "with components proxy, frontend, backend"),
])
def test_scale_refuses(playbook, render_dir, scale, message):
    proc = playbook.run("scale.yml", {"ocp4_workload_litemaas_render_dir": str(render_dir), "litemaas_scale": scale}, expect_rc=2)
    assert message in proc.stdout


def test_key_cleanup_cronjob_command_runs_against_a_real_proxy(key_cleanup_render, proxy_factory, pg_server):
    """The rendered container command, arguments and environment, run as they are (Secrets and the Service URL replaced by
    local equivalents) against a proxy of its own and a portal database."""
    import hashlib
    import json

    import psycopg2

    render_dir = key_cleanup_render[0]
    container = load_dir(render_dir)["day2/key-cleanup/cronjob.yaml"][0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    proxy = proxy_factory(database="kc_cronjob_" + uuid.uuid4().hex[:6])
    portal = pg_server.create_database("kc_portal_" + uuid.uuid4().hex[:6])
    from tests.support.portal_db import SCHEMA as schema

    conn = psycopg2.connect(portal)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(schema.read_text())
        cur.execute("INSERT INTO users (username, email, oauth_id) VALUES ('u', 'u@example.com', 'u') RETURNING id")
        user_id = cur.fetchone()[0]
    keys = {}
    for alias, metadata in (("virtkey-ws1-user1", {"workshop": "ws1"}), ("virtkey-ws1-user2", {"workshop": "ws1"}),
                            ("virtkey-nometa", {}), ("portal_key_1", {"workshop": "ws1"})):
        status, body = proxy.admin("POST", "/key/generate", {"key_alias": alias, "duration": "1d", "metadata": metadata})
        assert status == 200, body
        keys[alias] = body["key"]
        with conn.cursor() as cur:
            cur.execute("INSERT INTO api_keys (user_id, name, key_hash, key_prefix, litellm_key_alias) VALUES (%s, %s, %s, 'sk-...', %s)",
                        (user_id, alias, hashlib.sha256(body["key"].encode()).hexdigest(), alias))
    pconn = psycopg2.connect(proxy.dsn)
    pconn.autocommit = True
    with pconn.cursor() as cur:  # everything but user2 expired an hour ago
        cur.execute("UPDATE \"LiteLLM_VerificationToken\" SET expires = now() - interval '1 hour' WHERE key_alias <> 'virtkey-ws1-user2'")
    pconn.close()

    env = dict(os.environ, PYTHONPATH=str(PLAYBOOKS.parent / "files" / "proxy"))
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
    secrets = {("litellm-secret", "LITELLM_MASTER_KEY"): proxy.master_key, ("litemaas-db", "DATABASE_URL"): portal}
    for item in container["env"]:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[(ref["name"], ref["key"])]
    assert env["PROXY_URL"] == "http://litellm.litemaas.svc:4000"
    env["PROXY_URL"] = proxy.url  # the in-cluster Service, here on loopback
    command = [sys.executable if part == "python" else part for part in container["command"]] + container["args"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    # Expired, alias virtkey- or capacity-check-, metadata has "workshop": only user1.
    assert [k["key_alias"] for k in summary["keys"]] == ["virtkey-ws1-user1"]
    assert (summary["deleted"], summary["portal_deactivated"], summary["errors"]) == (1, 1, [])
    status, body = proxy.admin("GET", "/key/list?size=100&return_full_object=true")
    assert sorted(k["key_alias"] for k in body["keys"]) == ["portal_key_1", "virtkey-nometa", "virtkey-ws1-user2"]
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM api_keys WHERE NOT is_active")
        assert cur.fetchall() == [("virtkey-ws1-user1",)]
    conn.close()

"""The documented command lines that run a Job (key cleanup once now, restore), and the Job waits of the manifest
pipeline: a Job that cannot run or that failed stops the play early, naming the Job and why; a key cleanup run whose
pod is gone says so. Run exactly as written against the in-memory API server (tests/support/fake_k8s.py) named by
``$HOME/.kube/config``, on one deployed platform shared by the tests of this module."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import uuid

import pytest

from tests.playbooks.conftest import REPO, recap
from tests.support.doc_commands import CLUSTER_VARS, kube_home, sh
from tests.support.fake_k8s import FakeKubernetes
from tests.support.portal_db import SCHEMA as PORTAL_SCHEMA

DOMAIN = "apps.example.com"
NS = "litemaas"
RUN_NOW = "ansible-playbook rhpds.litemaas.key_cleanup -e litemaas_key_cleanup_run_now=true"
RUN_NOW_PREFIX = ("""ansible-playbook rhpds.litemaas.key_cleanup -e '{"litemaas_key_cleanup_alias_prefixes": ["virtkey-"]}'"""
                  " -e litemaas_key_cleanup_run_now=true")
RESTORES = {
    "20260301-020000": "ansible-playbook rhpds.litemaas.restore -e litemaas_restore_backup=20260301-020000 -e litemaas_restore_confirm=true",
    "20260301-030000": "ansible-playbook rhpds.litemaas.restore -e litemaas_restore_backup=20260301-030000 -e litemaas_restore_confirm=true",
    "pre-upgrade-20260301-101500":
        "ansible-playbook rhpds.litemaas.restore -e litemaas_restore_backup=pre-upgrade-20260301-101500 -e litemaas_restore_confirm=true",
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory, ansible_env):
    """(server, env, cwd): LiteMaaS deployed on the in-memory API server that ``$HOME/.kube/config`` names, with the key
    cleanup CronJob installed."""
    root = tmp_path_factory.mktemp("jobs")
    fake = FakeKubernetes().start()
    fake.add({"apiVersion": "config.openshift.io/v1", "kind": "Ingress", "metadata": {"name": "cluster"}, "spec": {"domain": DOMAIN}})
    env = kube_home(root, fake, ansible_env, dict(CLUSTER_VARS, litemaas_backup_wait_timeout=60))
    sh("ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas", env, root)
    sh("ansible-playbook rhpds.litemaas.key_cleanup", env, root)
    yield fake, env, root
    fake.stop()


def _run(command: str, env: dict, cwd) -> subprocess.CompletedProcess:
    """A command line that is expected to fail, run through bash as a reader would."""
    return subprocess.run(["bash", "-c", command], env=env, cwd=str(cwd), capture_output=True, text=True, timeout=900, check=False)


def _failure(output: str, task: str) -> str:
    """The msg of the failed task (the last one of that name), as ansible-playbook prints it."""
    block = output.rsplit(f" : {task}]", 1)[1]
    line = next(li for li in block.splitlines() if li.startswith("fatal: [localhost]"))
    return json.loads(line.split("=> ", 1)[1])["msg"]


def _jobs(fake, prefix: str) -> list:
    return [n for n in fake.names("jobs", NS) if n.startswith(prefix)]


# ---------------------------------------------------------------- key cleanup once now

def _cleanup_summary(fake, proxy_factory, pg_server, args: list) -> str:
    """What the key cleanup container of the CronJob prints when it runs, with ``args``, against a real proxy and a real
    portal database holding two expired workshop keys, one current one and one portal key."""
    import hashlib

    import psycopg2

    container = copy.deepcopy(fake.objects[("cronjobs", NS, "litemaas-key-cleanup")]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0])
    proxy = proxy_factory(database="kc_jobs_" + uuid.uuid4().hex[:6])
    portal = pg_server.create_database("kc_jobs_portal_" + uuid.uuid4().hex[:6])
    conn = psycopg2.connect(portal)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(PORTAL_SCHEMA.read_text())
        cur.execute("INSERT INTO users (username, email, oauth_id) VALUES ('u', 'u@example.com', 'u') RETURNING id")
        user_id = cur.fetchone()[0]
        for alias in ("virtkey-ws1-user1", "virtkey-ws1-user2", "portal-key"):
            status, body = proxy.admin("POST", "/key/generate", {"key_alias": alias, "duration": "1d"})
            assert status == 200, body
            cur.execute("INSERT INTO api_keys (user_id, name, key_hash, key_prefix, litellm_key_alias) VALUES (%s, %s, %s, 'sk-...', %s)",
                        (user_id, alias, hashlib.sha256(body["key"].encode()).hexdigest(), alias))
    conn.close()
    pconn = psycopg2.connect(proxy.dsn)
    pconn.autocommit = True
    with pconn.cursor() as cur:  # all but user2 expired an hour ago
        cur.execute("UPDATE \"LiteLLM_VerificationToken\" SET expires = now() - interval '1 hour' WHERE key_alias <> 'virtkey-ws1-user2'")
    pconn.close()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "files" / "proxy")}
    env.update({item["name"]: item["value"] for item in container["env"] if "value" in item})
    env.update(PROXY_URL=proxy.url, LITELLM_MASTER_KEY=proxy.master_key, PORTAL_DATABASE_URL=portal)  # the Service and the Secrets, here
    command = [sys.executable if part == "python" else part for part in container["command"]] + args
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _summary_shown(output: str) -> dict:
    block = output.split("TASK [rhpds.litemaas.litemaas_key_cleanup : Show the summary]", 1)[1]
    text = block.split("=> ", 1)[1].split("\n\n", 1)[0]
    return json.loads(text)["msg"]


@pytest.mark.parametrize("command, args", [(RUN_NOW, []), (RUN_NOW_PREFIX, ["--alias-prefix", "virtkey-"])], ids=["all", "prefix"])
def test_key_cleanup_once_now_runs_the_cronjob_as_a_job_and_shows_its_summary(platform, proxy_factory, pg_server, command, args):
    fake, env, cwd = platform
    # The log of the run's pod: what the cleanup really prints for the arguments the line sets.
    printed = _cleanup_summary(fake, proxy_factory, pg_server, args)
    fake.set_pod_log(NS, "litemaas-key-cleanup-now-", printed)
    before = set(_jobs(fake, "litemaas-key-cleanup-now-"))
    proc = sh(command, env, cwd)
    new = sorted(set(_jobs(fake, "litemaas-key-cleanup-now-")) - before)
    assert len(new) == 1, new
    job = fake.objects[("jobs", NS, new[0])]
    cron = fake.objects[("cronjobs", NS, "litemaas-key-cleanup")]
    # The Job is the CronJob's template (with the line's arguments) and completed; the summary shown is its pod's.
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == args == cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [c["type"] for c in job["status"]["conditions"] if c["status"] == "True"] == ["SuccessCriteriaMet", "Complete"]
    summary = _summary_shown(proc.stdout)
    assert summary == json.loads(printed.strip().splitlines()[-1])
    expected = ["virtkey-ws1-user1"] if args else ["portal-key", "virtkey-ws1-user1"]
    assert sorted(k["key_alias"] for k in summary["keys"]) == expected and summary["errors"] == []


def test_key_cleanup_once_now_says_so_when_the_runs_pod_is_gone(platform):
    """The pod garbage collector removed the finished pod before its log was read: the play names the Job, says the
    cleanup completed and how to see a summary, and does not fail on the missing pod."""
    fake, env, cwd = platform
    fake.gc_finished_pods = True
    try:
        proc = sh(RUN_NOW, env, cwd)
    finally:
        fake.gc_finished_pods = False
    job = sorted(_jobs(fake, "litemaas-key-cleanup-now-"))[-1]
    assert f"The key cleanup Job {NS}/{job} completed (the cleanup exited 0), but its pod is gone, so its summary (the pod's log) cannot be shown." \
        in " ".join(proc.stdout.split())
    assert "Run the cleanup again to see one: ansible-playbook rhpds.litemaas.key_cleanup -e litemaas_key_cleanup_run_now=true" in " ".join(proc.stdout.split())
    assert "Read the run's summary" in proc.stdout and "has no attribute" not in proc.stdout and recap(proc.stdout)["failed"] == 0


def test_key_cleanup_once_now_stops_early_naming_the_job_whose_image_cannot_be_pulled(platform):
    fake, env, cwd = platform
    fake.unpullable = {"quay.io/example/litemaas-proxy:1.0"}
    try:
        proc = _run(RUN_NOW + " -e litemaas_manifests_progress_timeout=2", env, cwd)
    finally:
        fake.unpullable = set()
    assert proc.returncode == 2, proc.stdout[-3000:]
    job = sorted(_jobs(fake, "litemaas-key-cleanup-now-"))[-1]
    message = _failure(proc.stdout, "Fail on the rollouts and Jobs that cannot progress in key cleanup run")
    assert re.fullmatch(rf"Job/{NS}/{job} does not progress after 2 s: pod {job}-[a-z0-9]+ container key-cleanup: ImagePullBackOff: "
                        r'Back-off pulling image "quay.io/example/litemaas-proxy:1.0"; .*\.', message), message


# ---------------------------------------------------------------- backup and restore

def _seed_backups(fake, env, cwd):
    """The backups the docs restore, recorded as the backup Job records one: the first by the backup play itself (PVC
    litemaas-backup and Job litemaas-backup-<name>), the others as Jobs of the same template under their names."""
    if "litemaas-backup-20260301-020000" in fake.names("jobs", NS):
        return
    sh("ansible-playbook rhpds.litemaas.backup", env, cwd)  # the PVC and one backup
    first = fake.objects[("jobs", NS, sorted(_jobs(fake, "litemaas-backup-"))[0])]
    for name in RESTORES:
        job = copy.deepcopy(first)
        job["metadata"] = {"name": f"litemaas-backup-{name}", "namespace": NS, "labels": first["metadata"]["labels"]}
        job.pop("status", None)
        job["spec"].pop("selector", None)
        template = job["spec"]["template"]
        template["metadata"]["labels"] = {k: v for k, v in template["metadata"]["labels"].items() if "controller-uid" not in k and "job-name" not in k}
        for item in template["spec"]["containers"][0]["env"]:
            if item["name"] == "BACKUP_NAME":
                item["value"] = name
        fake.add(job)


@pytest.mark.parametrize("name", sorted(RESTORES))
def test_restore_commands_stop_the_writers_restore_and_start_them_again(platform, name):
    fake, env, cwd = platform
    _seed_backups(fake, env, cwd)
    replicas = {d: fake.objects[("deployments", NS, d)]["spec"]["replicas"] for d in ("litellm", "litellm-backend")}
    start = len(fake.requests)
    proc = sh(RESTORES[name], env, cwd)
    assert f"Restored litemaas_db, litellm_db from backup {name}." in proc.stdout
    job = fake.objects[("jobs", NS, f"litemaas-restore-{name}")]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "BACKUP_NAME", "value": name} in container["env"] and {"name": "DATABASES", "value": "litemaas_db litellm_db"} in container["env"]
    assert {"name": "backup", "persistentVolumeClaim": {"claimName": "litemaas-backup"}} in job["spec"]["template"]["spec"]["volumes"]
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
    # The proxy and the portal backend were scaled to 0 before the Job, and back to their counts after it.
    scales = [(r["path"].split("/")[-2], r["body"]["spec"]["replicas"]) for r in fake.requests[start:]
              if r["method"] == "PATCH" and r["path"].endswith("/scale")]
    job_created = next(i for i, r in enumerate(fake.requests[start:]) if r["method"] == "PATCH" and r["path"].endswith(f"/jobs/litemaas-restore-{name}"))
    first_scales = [i for i, r in enumerate(fake.requests[start:]) if r["method"] == "PATCH" and r["path"].endswith("/scale")]
    assert sorted(scales) == sorted([(d, 0) for d in replicas] + list(replicas.items())), scales
    assert first_scales[1] < job_created < first_scales[2]
    assert {d: fake.objects[("deployments", NS, d)]["spec"]["replicas"] for d in replicas} == replicas


def test_a_restore_whose_job_fails_stops_at_once_with_the_reason_and_starts_the_writers_again(platform):
    fake, env, cwd = platform
    replicas = {d: fake.objects[("deployments", NS, d)]["spec"]["replicas"] for d in ("litellm", "litellm-backend")}
    fake.set_pod_exit(NS, "litemaas-restore-20260229-000000-", 2)  # the script's exit when the backup is not there
    proc = _run("ansible-playbook rhpds.litemaas.restore -e litemaas_restore_backup=20260229-000000 -e litemaas_restore_confirm=true", env, cwd)
    assert proc.returncode == 2, proc.stdout[-3000:]
    message = _failure(proc.stdout, "Fail on the rollouts and Jobs that cannot progress in restore")
    assert re.fullmatch(rf"Job/{NS}/litemaas-restore-20260229-000000: failed: BackoffLimitExceeded: Job has reached the specified backoff limit; "
                        rf"pod litemaas-restore-20260229-000000-[a-z0-9]+ container pg-restore exited with code 2 \(Error\); "
                        rf"its log: oc logs -n {NS} job/litemaas-restore-20260229-000000\.", message), message
    assert {d: fake.objects[("deployments", NS, d)]["spec"]["replicas"] for d in replicas} == replicas


def test_a_backup_job_held_by_an_unbound_claim_fails_early_naming_the_job_and_the_claim(platform):
    fake, env, cwd = platform
    fake.no_storage_class = True
    try:
        proc = _run("ansible-playbook rhpds.litemaas.backup -e litemaas_backup_name=held -e litemaas_backup_pvc=backup-elsewhere"
                    " -e litemaas_manifests_progress_timeout=2", env, cwd)
    finally:
        fake.no_storage_class = False
    assert proc.returncode == 2, proc.stdout[-3000:]
    message = _failure(proc.stdout, "Fail on the rollouts and Jobs that cannot progress in backup")
    assert message.startswith(f"Job/{NS}/litemaas-backup-held does not progress after 2 s: pod litemaas-backup-held-"), message
    assert "pod has unbound immediate PersistentVolumeClaims" in message and "PersistentVolumeClaim backup-elsewhere is Pending" in message


# ---------------------------------------------------------------- model serving (KServe reports Ready)

SERVE_ONE = """ansible-playbook rhpds.litemaas.model_serving -e '{"litemaas_model_serving_models": ["granite-3-2-8b-instruct"]}'"""
SERVE_FILE = "ansible-playbook rhpds.litemaas.model_serving -e @models.yml"


def test_model_serving_commands_wait_until_kserve_reports_every_model_ready(platform, tmp_path):
    fake, env, cwd = platform
    fake.kserve = True
    text = (REPO / "docs" / "model-serving.md").read_text()
    (tmp_path / "models.yml").write_text(re.search(r"with `models.yml` like:\n\n```yaml\n(.*?)```", text, re.S).group(1))
    for namespace in ("llm-hosting",):
        if namespace not in fake.names("namespaces", ""):
            fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        one = sh(SERVE_ONE, env, tmp_path)
        assert "Wait until every InferenceService is Ready" in one.stdout and recap(one.stdout)["failed"] == 0
        served_one = {ns for (r, ns, n) in fake.objects if r == "inferenceservices" and n == "granite-3-2-8b-instruct"}
        assert served_one, fake.objects.keys()
        many = sh(SERVE_FILE, env, tmp_path)
    finally:
        fake.kserve = False
    assert recap(many.stdout)["failed"] == 0
    assert fake.names("inferenceservices", "llm-hosting") == ["granite-3-2-8b-instruct", "nomic-embed-text-v1-5", "phi-mini"]
    phi = fake.objects[("inferenceservices", "llm-hosting", "phi-mini")]
    assert phi["status"]["address"]["url"] == "http://phi-mini-predictor.llm-hosting.svc.cluster.local"
    assert phi["spec"]["predictor"]["model"]["storageUri"] == "oci://quay.io/example/phi-mini-ov:1"
    assert {"Ready"} <= {c["type"] for c in phi["status"]["conditions"] if c["status"] == "True"}

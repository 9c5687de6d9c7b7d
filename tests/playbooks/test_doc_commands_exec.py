"""The documented ``oc exec``, ``oc adm top pods`` and ``oc edit`` lines, run exactly as written against the in-memory
API server (tests/support/fake_k8s.py) after one deploy of the platform into it.

``oc`` is Debian's kubectl (as in tests/playbooks/test_doc_commands_oc.py) behind a two-line wrapper: ``oc adm top``
is kubectl's ``top`` under oc's ``adm`` command tree (oc builds it from kubectl's code), so the wrapper passes
``adm top ...`` on as ``top ...`` and everything else unchanged.

``oc exec`` goes through the fake's pods/exec (SPDY/3.1, remote command v4, tests/support/fake_kubelet.py) to a
**stand-in of the container runtime**: the runners below run the command on this host, with the container's
environment from its pod spec (resolved by the fake from the deployed Secrets and ConfigMaps), against the real
service the container would be. The addresses differ from the container's and are mapped as follows:

- ``litellm`` (the proxy): the real proxy (tests/support/proxy.py) with this module's PostgreSQL and Redis; the
  container's own address ``127.0.0.1:4000`` in the command's arguments is rewritten to the proxy's port.
- ``litellm-redis``: a real Redis with the password the deploy generated (Secret ``litellm-redis``); ``redis-cli``
  is given ``-h 127.0.0.1 -p <its port>`` in front of the command's own arguments (in the container it is the default).
- ``litellm-postgres``: a real PostgreSQL whose superuser is ``postgres``, with the portal's database ``litemaas_db``
  (tests/support/portal_db.py's schema, rows seeded here) and the proxy's ``litellm_db``; ``PGHOST``/``PGPORT`` name
  its socket directory and port (in the container psql's default socket is the server's), ``PATH`` its client.

``oc adm top pods`` reads metrics.k8s.io PodMetrics of the usage this test gives (``pod_usage``); ``oc edit`` runs
with ``EDITOR`` set to a script that makes the change the doc's comment says. Which lines these are: RUN in
tests/playbooks/test_doc_commands.py.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import urllib.request

import pytest
import yaml

from tests.playbooks.conftest import recap
from tests.support.doc_commands import CLUSTER_VARS, KUBECTL, kube_home, sh, text_of
from tests.support.fake_k8s import FakeKubernetes
from tests.support.portal_db import SCHEMA, sql
from tests.support.services import PostgresServer, RedisServer, pg_bin

DOMAIN = "apps.example.com"
NS = "litemaas"
DEPLOY = "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas"
VARIABLES = ("NS=litemaas", "REDIS_PASSWORD=$(oc get secret litellm-redis -n $NS -o jsonpath='{.data.REDIS_PASSWORD}' | base64 -d)")
PSQL_PORTAL = 'psql_portal() { oc exec -i -n $NS litellm-postgres-0 -- psql -U postgres -d litemaas_db "$@"; }'
PSQL_PROXY = 'psql_proxy() { oc exec -i -n $NS litellm-postgres-0 -- psql -U postgres -d litellm_db "$@"; }'
METRICS = ('oc -n litemaas exec deploy/litellm -- python -c "import urllib.request as u; '
           "print(u.urlopen('http://127.0.0.1:4000/metrics').read().decode())\" | grep -v '^#' | head")
FLUSH = 'oc exec -n $NS deploy/litellm-redis -- redis-cli -a "$REDIS_PASSWORD" --no-auth-warning FLUSHALL'
TOP = "oc adm top pods -n $NS"
EDIT = "oc -n openshift-monitoring edit configmap cluster-monitoring-config"
OC_WRAPPER = f"""#!/bin/sh
# oc adm top ... is kubectl's top ...; everything else is kubectl's own verb.
if [ "$1" = adm ] && [ "$2" = top ]; then shift; exec {KUBECTL} "$@"; fi
exec {KUBECTL} "$@"
"""


class Runner:
    """A container's command, run on this host (the stand-in of the container runtime): ``argv`` maps the command's
    arguments, ``extra`` adds to the container's environment; each call is recorded in ``calls``."""

    def __init__(self, argv=None, extra=None):
        self.argv, self.extra, self.calls = argv or (lambda c: c), extra or {}, []

    def __call__(self, command, stdin, env):
        self.calls.append({"command": list(command), "env": dict(env), "stdin": stdin})
        host_env = dict(env, **self.extra)
        host_env["PATH"] = self.extra.get("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        host_env.setdefault("HOME", os.environ.get("HOME", "/"))
        proc = subprocess.run(self.argv(list(command)), input=stdin, capture_output=True, env=host_env, timeout=60, check=False)
        return proc.stdout, proc.stderr, proc.returncode


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, ansible_env, proxy_factory, work_dir):
    """(fake, env, cwd, services): the platform deployed into the in-memory API server, its pods' commands run by the
    runners above against this module's real PostgreSQL, Redis and proxy."""
    root = tmp_path_factory.mktemp("exec")
    fake = FakeKubernetes().start()
    fake.add({"apiVersion": "config.openshift.io/v1", "kind": "Ingress", "metadata": {"name": "cluster"}, "spec": {"domain": DOMAIN}})
    env = kube_home(root, fake, ansible_env, CLUSTER_VARS, oc=True)
    env.pop("NS", None)
    oc = root / "bin" / "oc"
    oc.unlink()
    oc.write_text(OC_WRAPPER)
    oc.chmod(0o755)
    cwd = root / "cwd"
    cwd.mkdir()
    started = []
    try:
        deploy = sh(DEPLOY, env, cwd)
        assert recap(deploy.stdout)["failed"] == 0
        password = base64.b64decode(fake.objects[("secrets", NS, "litellm-redis")]["data"]["REDIS_PASSWORD"]).decode()
        # (under the session's work directory, which the database's own OS user may enter)
        pg = PostgresServer(work_dir / "doc-exec-pg").start()
        started.append(pg)
        redis = RedisServer(work_dir / "doc-exec-redis", password=password).start()
        started.append(redis)
        portal = pg.create_database("litemaas_db")
        sql(portal, SCHEMA.read_text())
        proxy = proxy_factory(dsn=pg.create_database("litellm_db"), redis_url=redis.url)
        pg_client = dict(PGHOST=str(pg.data_dir / "sock"), PGPORT=str(pg.port),
                         PATH=os.path.dirname(pg_bin("psql")) + os.pathsep + os.environ["PATH"])
        runners = {
            "litellm": Runner(argv=lambda c: [a.replace("127.0.0.1:4000", f"127.0.0.1:{proxy.port}") for a in c]),
            "litellm-redis": Runner(argv=lambda c: c[:1] + ["-h", "127.0.0.1", "-p", str(redis.port)] + c[1:] if c[:1] == ["redis-cli"] else c),
            "litellm-postgres": Runner(extra=pg_client),
        }
        for owner, runner in runners.items():
            fake.exec_runners[(NS, owner, None)] = runner
        yield fake, dict(env, NS=NS), cwd, {"pg": pg, "redis": redis, "proxy": proxy, "portal": portal, "runners": runners}
    finally:
        for service in reversed(started):
            service.stop()
        fake.stop()


def session(keys: list, env: dict, cwd, after: str = "", stdin: str = "") -> subprocess.CompletedProcess:
    """The doc lines ``keys`` pasted one after another into one bash (then ``after``, a reader's next command)."""
    script = "\n".join(text_of(k) for k in keys) + ("\n" + after if after else "") + "\n"
    return subprocess.run(["bash", "-c", script], env=env, cwd=str(cwd), input=stdin, capture_output=True, text=True, timeout=120, check=False)


def redis_cli(redis, *args) -> str:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(redis.port), "-a", redis.password, "--no-auth-warning", *args],
                          capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def psql_rows(out: str) -> list:
    """The rows of psql's aligned table output, as lists of cell texts."""
    lines = out.splitlines()
    return [[cell.strip() for cell in line.split("|")] for line in lines[2:] if line.strip() and not re.match(r"^\(\d+ rows?\)$", line)]


# ---------------------------------------------------------------- docs/monitoring.md: the proxy's metrics from inside its pod

def test_metrics_line_prints_the_proxys_metric_lines(cluster):
    fake, env, cwd, services = cluster
    runner = services["runners"]["litellm"]
    out = sh(METRICS, env, cwd).stdout.splitlines()
    # What the line ran in the proxy's container: python -c with the doc's program (kubectl passed the words as written).
    call = runner.calls[-1]
    assert call["command"] == ["python", "-c", "import urllib.request as u; print(u.urlopen('http://127.0.0.1:4000/metrics').read().decode())"]
    proxy_env = {e["name"] for e in fake.objects[("deployments", NS, "litellm")]["spec"]["template"]["spec"]["containers"][0].get("env") or []}
    assert proxy_env and proxy_env <= set(call["env"]), proxy_env - set(call["env"])
    # head: the first 10 lines that are not comments: the samples the real proxy exports first (same names and labels).
    with urllib.request.urlopen(f"{services['proxy'].url}/metrics", timeout=10) as resp:
        exported = [line for line in resp.read().decode().splitlines() if line and not line.startswith("#")]
    assert len(out) == 10, out
    for line in out:
        assert re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$", line), line
    assert [line.rsplit(" ", 1)[0] for line in out] == [line.rsplit(" ", 1)[0] for line in exported[:10]], (out, exported[:10])
    assert any(line.startswith(("litellm_", "litemaas_")) for line in exported), exported[:20]


# ---------------------------------------------------------------- docs/troubleshooting.md 6: flush Redis

def test_flush_line_empties_the_proxys_redis(cluster):
    fake, env, cwd, services = cluster
    redis = services["redis"]
    redis_cli(redis, "SET", "litemaas:doc-exec:before-flush", "1")
    redis_cli(redis, "HSET", "litemaas:doc-exec:hash", "a", "1")
    assert int(redis_cli(redis, "DBSIZE")) >= 2
    run = session(list(VARIABLES) + [FLUSH], {k: v for k, v in env.items() if k != "NS"}, cwd)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "OK", run.stdout
    assert redis_cli(redis, "EXISTS", "litemaas:doc-exec:before-flush") == "0"
    assert redis_cli(redis, "DBSIZE") == "0"
    # The password came from the deployed Secret through the reader's variable, and redis-cli used it.
    call = services["runners"]["litellm-redis"].calls[-1]
    assert call["command"] == ["redis-cli", "-a", redis.password, "--no-auth-warning", "FLUSHALL"]


def test_a_wrong_redis_password_fails_with_redis_answer_and_its_exit_code(cluster):
    fake, env, cwd, services = cluster
    redis_cli(services["redis"], "SET", "litemaas:doc-exec:kept", "1")
    run = session([FLUSH], dict(env, REDIS_PASSWORD="not-the-password"), cwd)
    # redis-cli prints the server's refusal and FLUSHALL is refused; the key is still there.
    assert "WRONGPASS" in run.stdout + run.stderr or "NOAUTH" in run.stdout + run.stderr, (run.stdout, run.stderr)
    assert redis_cli(services["redis"], "EXISTS", "litemaas:doc-exec:kept") == "1"


# ---------------------------------------------------------------- docs/troubleshooting.md: psql_portal / psql_proxy

@pytest.fixture(scope="module")
def portal_rows(cluster):
    """The portal's rows the SELECTs read: models with their availability, a user's keys in each sync state."""
    services = cluster[3]
    portal = services["portal"]
    sql(portal, "INSERT INTO models (id, name, availability) VALUES ('granite-3-8b', 'granite-3-8b', 'available'), "
                "('llama-3-1-8b', 'llama-3-1-8b', 'unavailable'), ('phi-mini', 'phi-mini', 'available')")
    user = sql(portal, "INSERT INTO users (username, email, oauth_id) VALUES ('alice', 'alice@example.com', 'alice') RETURNING id::text AS id")[0]["id"]
    keys = [("alice-synced", "synced", "now() + interval '1 day'"), ("alice-pending", "pending", "now() + interval '1 day'"),
            ("alice-error", "error", "NULL"), ("alice-expired", "synced", "now() - interval '1 day'")]
    for i, (alias, status, expires) in enumerate(keys):
        sql(portal, f"INSERT INTO api_keys (user_id, name, key_hash, key_prefix, litellm_key_alias, sync_status, expires_at) "
                    f"VALUES (%s, %s, %s, 'sk-...', %s, %s, {expires})", (user, alias, f"{i:064d}", alias, status))
    return portal


def test_psql_portal_selects_show_the_portals_rows(cluster, portal_rows):
    fake, env, cwd, services = cluster
    base = {k: v for k, v in env.items() if k != "NS"}
    defs = ["NS=litemaas", PSQL_PORTAL, PSQL_PROXY]
    run = session(defs + ["""psql_portal -c "SELECT id FROM models WHERE id = 'granite-3-8b'\""""], base, cwd)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].strip() == "id" and psql_rows(run.stdout) == [["granite-3-8b"]], run.stdout
    run = session(defs + ['psql_portal -c "SELECT id, availability FROM models ORDER BY id"'], base, cwd)
    assert run.returncode == 0, run.stderr
    assert psql_rows(run.stdout) == [["granite-3-8b", "available"], ["llama-3-1-8b", "unavailable"], ["phi-mini", "available"]], run.stdout
    run = session(defs + ["""psql_portal -c "SELECT litellm_key_alias, is_active, sync_status, expires_at FROM api_keys WHERE sync_status <> 'synced' """
                          """OR expires_at < now()\""""], base, cwd)
    assert run.returncode == 0, run.stderr
    rows = sorted(psql_rows(run.stdout))
    assert [r[:3] for r in rows] == [["alice-error", "t", "error"], ["alice-expired", "t", "synced"], ["alice-pending", "t", "pending"]], run.stdout
    assert rows[0][3] == "" and rows[1][3] and rows[2][3], rows  # no expiry; the expired and the pending key's dates
    # They ran as written in the database pod, as its superuser, in the portal's database.
    call = services["runners"]["litellm-postgres"].calls[-1]
    assert call["command"][:5] == ["psql", "-U", "postgres", "-d", "litemaas_db"], call["command"]


def test_psql_functions_read_sql_from_stdin_and_reach_the_proxys_database(cluster, portal_rows):
    fake, env, cwd, services = cluster
    base = {k: v for k, v in env.items() if k != "NS"}
    defs = ["NS=litemaas", PSQL_PORTAL, PSQL_PROXY]
    # -i: what the reader pipes in is psql's input.
    run = session(defs, base, cwd, after="psql_portal -At", stdin="SELECT count(*) FROM models WHERE availability = 'available';\n")
    assert run.returncode == 0 and run.stdout.strip() == "2", (run.stdout, run.stderr)
    # psql_proxy: the proxy's own database, with the tables the proxy created at its start.
    run = session(defs, base, cwd, after="psql_proxy -At -c 'SELECT current_database()' -c \"SELECT to_regclass('\\\"LiteLLM_VerificationToken\\\"')\"")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["litellm_db", '"LiteLLM_VerificationToken"'], run.stdout
    # A failing statement: psql's error on stderr and its exit code through oc.
    run = session(defs, base, cwd, after='psql_portal -v ON_ERROR_STOP=1 -c "SELECT nope FROM models"')
    assert run.returncode == 1 and 'column "nope" does not exist' in run.stderr, (run.returncode, run.stderr)
    assert "command terminated with exit code 1" in run.stderr


# ---------------------------------------------------------------- docs/troubleshooting.md: oc adm top pods

def test_top_lists_each_pods_cpu_and_memory(cluster):
    fake, env, cwd, services = cluster
    first = sh(TOP, env, cwd, rc=1)
    assert "Metrics API not available" in first.stderr, first.stderr  # a cluster without metrics-server
    pods = [n for n in fake.names("pods", NS) if fake.objects[("pods", NS, n)].get("status", {}).get("phase") == "Running"]
    assert len(pods) >= 4, pods
    usage, wanted = {}, {}
    for i, pod in enumerate(pods):
        containers = [c["name"] for c in fake.objects[("pods", NS, pod)]["spec"]["containers"]]
        usage[(NS, pod)] = {c: {"cpu": f"{5 * (i + 1) + j}m", "memory": f"{64 * (i + 1) + j}Mi"} for j, c in enumerate(containers)}
        wanted[pod] = (f"{sum(5 * (i + 1) + j for j in range(len(containers)))}m", f"{sum(64 * (i + 1) + j for j in range(len(containers)))}Mi")
    fake.pod_usage = usage
    try:
        out = sh(TOP, env, cwd).stdout.splitlines()
    finally:
        fake.pod_usage = None
    assert out[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"], out
    assert {line.split()[0]: tuple(line.split()[1:]) for line in out[1:]} == wanted, out


# ---------------------------------------------------------------- docs/monitoring.md: oc edit of the cluster monitoring config

EDITOR = f"""#!{sys.executable}
# The reader's edit: "add enableUserWorkload: true" to config.yaml, everything else as it was.
import sys
import yaml

path = sys.argv[-1]
obj = yaml.safe_load(open(path))
config = yaml.safe_load(obj["data"]["config.yaml"]) or {{}}
config["enableUserWorkload"] = True
obj["data"]["config.yaml"] = yaml.safe_dump(config, sort_keys=False)
open(path, "w").write(yaml.safe_dump(obj, sort_keys=False))
"""


def test_edit_turns_user_workload_monitoring_on_and_keeps_the_rest(cluster, tmp_path):
    fake, env, cwd, services = cluster
    # The configmap as a cluster whose admin set platform monitoring's retention and storage has it.
    config = "prometheusK8s:\n  retention: 15d\n  volumeClaimTemplate:\n    spec:\n      resources:\n        requests:\n          storage: 40Gi\n"
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "openshift-monitoring"}})
    fake.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-monitoring-config", "namespace": "openshift-monitoring"},
              "data": {"config.yaml": config}})
    editor = tmp_path / "editor"
    editor.write_text(EDITOR)
    editor.chmod(0o755)
    out = sh(EDIT, dict(env, EDITOR=str(editor)), cwd).stdout
    assert out.strip() == "configmap/cluster-monitoring-config edited", out
    live = yaml.safe_load(fake.objects[("configmaps", "openshift-monitoring", "cluster-monitoring-config")]["data"]["config.yaml"])
    assert live == dict(yaml.safe_load(config), enableUserWorkload=True), live
    patch = [r for r in fake.requests if r["method"] == "PATCH" and r["path"].endswith("/configmaps/cluster-monitoring-config")]
    assert patch and patch[-1]["content_type"] == "application/strategic-merge-patch+json", patch

"""The proxy's quick start (files/proxy/README.md) and the one-run deploy of the platform with its models
(docs/model-serving.md), run exactly as written. Which commands these are: RUN in tests/playbooks/test_doc_commands.py.

The quick start installs the proxy into a virtualenv of its own and points it at ``db`` and ``redis``: here those are
the real PostgreSQL (user ``user``, password ``pw``, database ``litellm_db``) and Redis (password ``pw``) in a private
network and mount namespace (``unshare``) whose ``/etc/hosts`` names them, with the ports the lines say.

The one-run deploy goes against the in-memory API server (tests/support/fake_k8s.py, with its KServe and tokens
controllers) named by ``$HOME/.kube/config``; it registers the models in a real proxy, which reaches the predictor
Services by their cluster DNS names on port 80 as a pod of the cluster does: its ``/etc/hosts`` (a private mount
namespace) names them on a loopback address where the stub model server (tests/support/stub_upstream.py) listens.

Both need root (namespaces, port 80), which CI has; elsewhere they are skipped and say so.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.playbooks.conftest import REPO, recap
from tests.support.doc_commands import inventory, sh, text_of
from tests.support.fake_k8s import FakeKubernetes
from tests.support.portal_backend import PortalBackend, admin_keys_of
from tests.support.portal_db import create_portal_db, sql
from tests.support.proxy import ProxyProcess, http_json

NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root and util-linux unshare (private network and mount namespaces, port 80), as CI has")

PIP = "pip install ./files/proxy"
QUICK_START = ("export DATABASE_URL=postgresql://user:pw@db:5432/litellm_db",
               "export REDIS_URL=redis://:pw@redis:6379/0",
               """export LITELLM_MASTER_KEY=sk-$(python3 -c 'import secrets; print(secrets.token_hex(16))')""",
               "litemaas-proxy --host 0.0.0.0 --port 4000")
CATALOG_ITEM = "ansible-playbook rhpds.litemaas.deploy -e @catalog-item.yml"


def _get(url: str, headers: dict | None = None) -> tuple:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# ---------------------------------------------------------------- the quick start (files/proxy/README.md)

def inside(work: str, venv_bin: str) -> None:
    """Run in a new network, mount and PID namespace: PostgreSQL and Redis where the quick start's lines say, the lines,
    then what the proxy they start does; print the facts as JSON. Everything ends with the namespace."""
    import psycopg2

    from tests.support.services import PostgresServer, RedisServer, pg_bin

    root = Path(work)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hosts = root / "hosts"
    hosts.write_text("127.0.0.1 localhost db redis\n::1 localhost\n")
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    pg = PostgresServer(root / "pg", port=5432, user="user").start()
    # The role's password, and password authentication over TCP from now on (as a managed PostgreSQL has).
    pg._psql("ALTER ROLE \"user\" PASSWORD 'pw';\n")
    pg.create_database("litellm_db")
    (root / "pg" / "pgdata" / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
                                                        "host all all ::1/128 scram-sha-256\n")
    subprocess.run([pg_bin("psql"), "-X", "-q", "-h", str(root / "pg" / "sock"), "-p", "5432", "-U", "user", "-d", "postgres", "-c",
                    "SELECT pg_reload_conf()"], check=True, capture_output=True)
    redis = RedisServer(root / "redis", port=6379, password="pw").start()
    facts: dict = {}
    env = dict(os.environ, PATH=venv_bin + os.pathsep + os.environ["PATH"])
    # The quick start's lines as written, in one shell; the master key the reader chose is printed for the checks.
    script = "\n".join([text_of(line) for line in QUICK_START[:3]] + ['printf %s "$LITELLM_MASTER_KEY" > master-key',
                                                                      "exec " + text_of(QUICK_START[3])])
    with open(root / "proxy.log", "wb") as log:
        proxy = subprocess.Popen(["bash", "-c", script], cwd=work, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        for dummy in range(300):
            try:
                facts["readiness"] = _get("http://127.0.0.1:4000/health/readiness")
                break
            except OSError:
                if proxy.poll() is not None:
                    break
                time.sleep(0.1)
        master = (root / "master-key").read_text()
        facts["master_key"] = master
        facts["generate"] = http_json("POST", "http://127.0.0.1:4000/key/generate", {"key_alias": "quick-start"},
                                      {"Authorization": f"Bearer {master}"})[:2]
        facts["wrong_master"] = http_json("POST", "http://127.0.0.1:4000/key/generate", {"key_alias": "nope"},
                                          {"Authorization": "Bearer sk-not-the-master-key"})[0]
        key = (facts["generate"][1] or {}).get("key", "")
        facts["key_info"] = _get("http://127.0.0.1:4000/key/info", {"Authorization": f"Bearer {key}"})
        # The key as the database the URL names holds it (hashed), read with the URL's credentials.
        conn = psycopg2.connect("postgresql://user:pw@db:5432/litellm_db")
        with conn, conn.cursor() as cur:
            cur.execute('SELECT key_alias FROM "LiteLLM_VerificationToken" WHERE token = %s', (hashlib.sha256(key.encode()).hexdigest(),))
            facts["rows"] = [r[0] for r in cur.fetchall()]
        conn.close()
        try:
            psycopg2.connect("postgresql://user:wrong@db:5432/litellm_db").close()
            facts["wrong_password"] = "accepted"
        except psycopg2.OperationalError as exc:
            facts["wrong_password"] = str(exc)
        # The proxy's connections to that Redis (authenticated with the URL's password).
        clients = subprocess.run(["redis-cli", "-h", "redis", "-p", "6379", "-a", "pw", "--no-auth-warning", "CLIENT", "LIST"],
                                 capture_output=True, text=True, check=True).stdout
        facts["redis_clients"] = len([c for c in clients.splitlines() if "cmd=client" not in c])
    finally:
        os.killpg(proxy.pid, 15)
        facts["proxy_exit"] = proxy.wait(30)
        facts["proxy_log"] = (root / "proxy.log").read_text()[-3000:]
        redis.stop()
        pg.stop()
        print(json.dumps(facts))


@NEEDS_ROOT
def test_quick_start_installs_the_proxy_and_runs_it_with_the_database_and_redis_written(tmp_path, work_dir):
    # The checkout's proxy, as a reader's clone has it (its files, without what git ignores), where the line runs.
    checkout = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "files/proxy"], cwd=str(REPO), capture_output=True, text=True,
                           check=True).stdout.split("\n")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, checkout / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=str(venv / "bin") + os.pathsep + env["PATH"], VIRTUAL_ENV=str(venv))
    out = sh(PIP, env, checkout, timeout=600).stdout
    assert re.search(r"Successfully installed .*litemaas-proxy-\d", out), out[-3000:]
    version = subprocess.run([str(venv / "bin" / "litemaas-proxy"), "--version"], capture_output=True, text=True, check=True).stdout
    from litemaas_proxy import __version__

    assert version.strip() == f"litemaas-proxy {__version__}"

    work = work_dir / f"quick-start-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    run = subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--", sys.executable, "-c",
                          "import sys; from tests.playbooks.test_doc_commands_quickstart import inside; inside(*sys.argv[1:])",
                          str(work), str(venv / "bin")],
                         cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    facts = json.loads(run.stdout.strip().splitlines()[-1])
    shutil.rmtree(work, ignore_errors=True)
    log = facts["proxy_log"]
    # The master key the reader chose: sk- and 32 random hex digits.
    assert re.fullmatch(r"sk-[0-9a-f]{32}", facts["master_key"]), facts["master_key"]
    # Ready, with the database and Redis of the URLs connected.
    status, ready = facts.get("readiness") or (None, {})
    assert status == 200 and ready["status"] == "healthy" and ready["db"] == "connected" and ready["cache"] == "redis", (ready, log)
    # The master key creates a key; another key is refused; the new key works and is in litellm_db as user:pw sees it.
    status, made = facts["generate"]
    assert status == 200 and made["key"].startswith("sk-") and made["key_alias"] == "quick-start", (made, log)
    assert facts["wrong_master"] == 401
    status, info = facts["key_info"]
    assert status == 200 and info["info"]["key_alias"] == "quick-start", info
    assert facts["rows"] == ["quick-start"]
    assert "password authentication failed for user" in facts["wrong_password"], facts["wrong_password"]
    assert facts["redis_clients"] >= 1
    assert facts["proxy_exit"] == 0, log


# ---------------------------------------------------------------- one run: the platform and its models (docs/model-serving.md)

DOMAIN = "apps.example.com"
NS = "litemaas"
MODELS_NS = "llm-hosting"


class ClusterProxy(ProxyProcess):
    """The real proxy with the cluster's DNS names of ``names`` resolving to ``address``: an ``/etc/hosts`` of its own,
    bind-mounted in a private mount namespace (as a pod's resolver answers for the predictor Services)."""

    def __init__(self, *args, names: list, address: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.hosts = self.work_dir / "hosts"
        self.hosts.write_text(Path("/etc/hosts").read_text() + f"\n{address} {' '.join(names)}\n")

    def spawn(self, port: int) -> subprocess.Popen:
        self.write_config()
        self.port = port
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(self.hosts),
                 self.python, "-m", "litemaas_proxy", "--host", "127.0.0.1", "--port", str(self.port), "--config", str(self.config_path)],
                cwd=str(self.work_dir), env=self.env(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        return self.proc


@pytest.fixture()
def served_stub(work_dir):
    """The stub model server on port 80 of a loopback address of its own (a predictor Service's port)."""
    from tests.support.stub_upstream import StubUpstream

    for dummy in range(5):
        address = f"127.{random.randint(1, 254)}.{random.randint(0, 254)}.{random.randint(1, 254)}"
        try:
            stub = StubUpstream(port=80, host=address, log_path=work_dir / "predictor-stub.log").start()
            break
        except RuntimeError:
            continue
    else:
        pytest.fail("no loopback address with port 80 free for the stub model server")
    yield stub
    stub.stop()


@NEEDS_ROOT
def test_catalog_item_deploys_the_platform_serves_and_registers_the_models(tmp_path, ansible_env, pg_server, redis_server, served_stub):
    text = (REPO / "docs" / "model-serving.md").read_text()
    catalog = re.search(r"with `catalog-item.yml`:\n\n```yaml\n(.*?)```", text, re.S).group(1)
    (tmp_path / "catalog-item.yml").write_text(catalog)
    models = yaml.safe_load(catalog)["litemaas_model_serving_models"]
    fake = FakeKubernetes().start()
    fake.kserve = True
    names = [f"{m}-predictor.{MODELS_NS}.svc.cluster.local" for m in models]
    proxy = ClusterProxy(pg_server.create_database("catalog_item_" + uuid.uuid4().hex[:8]), redis_server.url, [],
                         master_key="sk-" + uuid.uuid4().hex, work_dir=tmp_path / "proxy", names=names, address=served_stub.host)
    # The portal backend: the admin keys the deploy writes into Secret backend-secret, the portal database, the proxy.
    portal_dsn = create_portal_db(pg_server, "catalog_portal_")
    portal = PortalBackend(portal_dsn, "", proxy.master_key, admin_api_keys=lambda: admin_keys_of(fake, NS), litellm_database_url=proxy.dsn).start()
    try:
        proxy.start()
        portal.litellm_api_url = proxy.url
        # The cluster: its ingress domain, and the namespace OpenShift AI serves models in.
        fake.add({"apiVersion": "config.openshift.io/v1", "kind": "Ingress", "metadata": {"name": "cluster"}, "spec": {"domain": DOMAIN}})
        fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": MODELS_NS}})
        home = tmp_path / "home"
        (home / ".kube").mkdir(parents=True)
        (home / ".kube" / "config").write_text(yaml.safe_dump(fake.kubeconfig()))
        # What a control node outside this cluster says in its inventory: route hosts no DNS resolves, no image build,
        # the proxy's and the portal's URLs, and the master key it gave the platform.
        hosts = inventory(tmp_path / "inventory", {
            "ocp4_workload_litemaas_verify_routes": False, "ocp4_workload_litemaas_proxy_image": "quay.io/example/litemaas-proxy:1.0",
            "ocp4_workload_litemaas_wait_timeout": 60, "ocp4_workload_litemaas_litellm_master_key": proxy.master_key,
            "litemaas_proxy_url": proxy.url, "litemaas_portal_url": portal.url})
        env = dict(ansible_env, HOME=str(home), ANSIBLE_INVENTORY=str(hosts), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
        env.pop("KUBECONFIG", None)
        run = sh(CATALOG_ITEM, env, tmp_path)
        assert recap(run.stdout)["failed"] == 0

        # The platform.
        assert fake.names("statefulsets", NS) == ["litellm-postgres"]
        assert {"litellm", "litellm-backend", "litellm-frontend", "litellm-redis"} <= set(fake.names("deployments", NS))
        assert fake.objects[("routes", NS, "litellm")]["spec"]["host"] == f"litellm.{DOMAIN}"
        secret = fake.objects[("secrets", NS, "litellm-secret")]["data"]["LITELLM_MASTER_KEY"]
        assert base64.b64decode(secret).decode() == proxy.master_key
        # The models, under token auth, with the token the tokens controller filled in.
        assert fake.names("inferenceservices", MODELS_NS) == sorted(models)
        for name in models:
            isvc = fake.objects[("inferenceservices", MODELS_NS, name)]
            assert isvc["metadata"]["annotations"]["security.opendatahub.io/enable-auth"] == "true"
        token = base64.b64decode(fake.objects[("secrets", MODELS_NS, "litemaas-model-client-token")]["data"]["token"]).decode()
        # Registered in the proxy: each served model with its in-cluster OpenAI base URL, the token and the catalog's prices.
        status, info = http_json("GET", proxy.url + "/model/info", headers={"Authorization": f"Bearer {proxy.master_key}"})[:2]
        assert status == 200, info
        registered = {m["model_name"]: m for m in info["data"]}
        assert sorted(registered) == sorted(models), sorted(registered)
        granite = registered["granite-3-2-8b-instruct"]
        assert granite["litellm_params"]["api_base"] == f"http://granite-3-2-8b-instruct-predictor.{MODELS_NS}.svc.cluster.local/v1"
        assert granite["model_info"]["input_cost_per_token"] == 0.0000002 and granite["model_info"]["output_cost_per_token"] == 0.0000006
        assert granite["model_info"]["litemaas_inference_service"] == f"{MODELS_NS}/granite-3-2-8b-instruct"
        assert registered["nomic-embed-text-v1-5"]["model_info"]["mode"] == "embedding"
        assert registered["granite-docling-258m"]["litellm_params"]["model"] == "docling/granite-docling-258m"
        # The portal was told to sync its model list, with the admin key of the platform's backend Secret.
        admin_key = base64.b64decode(fake.objects[("secrets", NS, "backend-secret")]["data"]["ADMIN_API_KEYS"]).decode().split(",")[0]
        assert ("/api/v1/models/sync", f"Bearer {admin_key}") in [(path, auth) for path, auth, dummy in portal.calls], portal.calls
        synced = sql(portal_dsn, "SELECT id, litellm_model_id FROM models WHERE availability = 'available' ORDER BY id")
        assert {r["id"]: r["litellm_model_id"] for r in synced} == {n: m["model_info"]["id"] for n, m in registered.items()}, synced

        # A chat through the proxy: relayed to the predictor's address (the stub, which lets only the token in).
        http_json("POST", served_stub.base_url + "/__stub/config", {"require_api_key": token})
        status, answer = http_json("POST", proxy.url + "/v1/chat/completions",
                                   {"model": "granite-3-2-8b-instruct", "messages": [{"role": "user", "content": "Say hello"}]},
                                   {"Authorization": f"Bearer {proxy.master_key}"})[:2]
        assert status == 200 and answer["choices"][0]["message"]["content"], (answer, proxy.log_tail())
        stats = http_json("GET", served_stub.base_url + "/__stub/stats")[1]
        chats = [r for r in stats["recent"] if r["path"] == "/v1/chat/completions"]
        assert [(r["model"], r["headers"]["authorization"]) for r in chats] == [("granite-3-2-8b-instruct", f"Bearer {token}")], chats
    finally:
        proxy.terminate()
        portal.stop()
        fake.stop()

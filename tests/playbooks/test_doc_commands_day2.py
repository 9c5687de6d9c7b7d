"""The documented day-2 command lines that reach the proxy and the portal database, run exactly as written: key sync,
portal admins, models (a list and KServe discovery), the capacity check, workshop keys and the curl lines of the docs.
Which commands these are: RUN in tests/playbooks/test_doc_commands.py.

They run as on a control node outside the cluster: ``$HOME/.kube/config`` names the in-memory API server
(tests/support/fake_k8s.py), which holds what the deploy role leaves there (Routes ``litellm`` and ``litellm-admin``,
Secrets ``litellm-secret``, ``backend-secret`` and ``litemaas-db`` with the real local proxy's master key and the
portal database's URL under its in-cluster host name). The roles read those. What such a control node cannot do,
resolve the route hosts and the database's Service name, the inventory's group_vars say as its user would: the proxy's
URL (``litemaas_proxy_url``), the portal's (``litemaas_portal_url``) and ``litemaas_db_host`` / ``litemaas_db_port`` (a
port-forward, here the real PostgreSQL). The proxy, PostgreSQL and Redis are real processes; the model server is the
stub (tests/support/stub_upstream.py); the portal backend is a stand-in of its health and model sync
(tests/support/portal_backend.py, with the admin keys of Secret ``backend-secret``); the portal database has the
portal's schema (tests/integration/modules/portal_schema.sql).
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from tests.playbooks.conftest import REPO, recap
from tests.support.doc_commands import inventory, sh, text_of
from tests.support.fake_k8s import FakeKubernetes
from tests.support.kserve_objects import inference_service, vllm_runtime
from tests.support.portal_backend import PortalBackend, admin_keys_of
from tests.support.portal_db import create_portal_db, sql
from tests.support.proxy import stub_models

NS = "litemaas"
DOMAIN = "apps.example.com"


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


class Day2:
    """The cluster as the deploy role leaves it, the real services behind it, and how to run a documented line."""

    def __init__(self, root: Path, ansible_env: dict, fake: FakeKubernetes, proxy, pg_server, portal_dsn: str, portal: PortalBackend):
        self.root, self.fake, self.proxy, self.pg, self.portal_dsn, self.portal = root, fake, proxy, pg_server, portal_dsn, portal
        self.admin_key = "ltm_admin_" + uuid.uuid4().hex
        home = root / "home"
        (home / ".kube").mkdir(parents=True)
        (home / ".kube" / "config").write_text(yaml.safe_dump(fake.kubeconfig()))
        self.base_env = dict(ansible_env, HOME=str(home), ANSIBLE_LOCAL_TEMP=str(root / "ansible-tmp"))
        self.base_env.pop("KUBECONFIG", None)
        self._n = 0

    def env(self, proxy=None, **shell) -> dict:
        """The environment of a command: an inventory whose group_vars reach ``proxy`` (default: the shared one), the
        portal and the database, as a control node without the cluster's DNS does; ``shell`` variables."""
        self._n += 1
        hosts = inventory(self.root / f"inventory-{self._n}", {
            "litemaas_proxy_url": (proxy or self.proxy).url, "litemaas_portal_url": self.portal.url,
            "litemaas_db_host": "127.0.0.1", "litemaas_db_port": self.pg.port})
        return dict(self.base_env, ANSIBLE_INVENTORY=str(hosts), **shell)

    def workdir(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def keys(self, proxy=None, prefix: str = "") -> dict:
        """alias -> key object of every proxy key whose alias starts with prefix (every page of /key/list)."""
        proxy, out, page = proxy or self.proxy, {}, 1
        while True:
            status, body = proxy.admin("GET", f"/key/list?return_full_object=true&size=100&page={page}")
            assert status == 200, body
            out.update({k["key_alias"]: k for k in body["keys"] if (k.get("key_alias") or "").startswith(prefix)})
            if page >= (body.get("total_pages") or 0):
                return out
            page += 1


def _seed_cluster(fake: FakeKubernetes, proxy, portal_dsn: str, admin_key: str) -> None:
    """What the deploy role leaves in the namespace that the day-2 roles read: routes and secrets."""
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    for name, service, port in (("litellm", "litellm", "http"), ("litellm-admin", "litellm-backend", "http")):
        fake.add({"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": {"name": name, "namespace": NS},
                  "spec": {"host": f"{name}.{DOMAIN}", "to": {"kind": "Service", "name": service, "weight": 100}, "port": {"targetPort": port},
                           "tls": {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}}})
    # The portal database as the cluster names it: the PostgreSQL Service's host name, port 5432.
    in_cluster = re.sub(r"@[^/]+/", "@litellm-postgres.litemaas.svc:5432/", portal_dsn)
    for name, data in (("litellm-secret", {"LITELLM_MASTER_KEY": proxy.master_key}),
                       ("backend-secret", {"ADMIN_API_KEYS": f"{admin_key},ltm_admin_second", "JWT_SECRET": uuid.uuid4().hex}),
                       ("litemaas-db", {"DATABASE_URL": in_cluster})):
        fake.add({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": NS},
                  "data": {k: b64(v) for k, v in data.items()}})


@pytest.fixture(scope="module")
def day2(tmp_path_factory, ansible_env, pg_server, proxy_factory, stub_upstream):
    root = tmp_path_factory.mktemp("doc-day2")
    # The proxy of these tests: the stub's chat and embedding models, and a Docling model on the stub (its echo).
    models = stub_models(stub_upstream.url) + [
        {"model_name": "docling", "litellm_params": {"model": "docling/docling", "api_base": stub_upstream.base_url}, "model_info": {"mode": "convert"}}]
    proxy = proxy_factory(database="doc_day2_" + uuid.uuid4().hex[:8], models=models)
    portal_dsn = create_portal_db(pg_server, "litemaas_db_")
    fake = FakeKubernetes().start()
    portal = PortalBackend(portal_dsn, proxy.url, proxy.master_key, admin_api_keys=lambda: admin_keys_of(fake, NS),
                           litellm_database_url=proxy.dsn).start()
    state = Day2(root, ansible_env, fake, proxy, pg_server, portal_dsn, portal)
    _seed_cluster(fake, proxy, portal_dsn, state.admin_key)
    yield state
    portal.stop()
    fake.stop()


def add_user(dsn, username, email, roles=("user",)) -> str:
    return sql(dsn, "INSERT INTO users (username, email, oauth_id, roles) VALUES (%s, %s, %s, %s) RETURNING id::text AS id",
               (username, email, username, list(roles)))[0]["id"]


# ---------------------------------------------------------------- key sync (docs/day2.md, docs/troubleshooting.md, playbooks/key_sync.yml)

def test_key_sync_commands_list_fix_and_import(day2):
    dsn, cwd = day2.portal_dsn, day2.workdir("key-sync")
    tag = uuid.uuid4().hex[:6]
    owner = add_user(dsn, f"owner-{tag}", f"owner-{tag}@example.com")
    sql(dsn, "INSERT INTO models (id, name, provider) VALUES ('granite-3-8b', 'granite-3-8b', 'openai') ON CONFLICT DO NOTHING")
    status, live = day2.proxy.admin("POST", "/key/generate", {"key_alias": f"ks-{tag}", "user_id": owner})
    assert status == 200, live
    for name, key_hash in ((f"live-{tag}", live["token"]), (f"gone-{tag}", hashlib.sha256(uuid.uuid4().bytes).hexdigest())):
        sql(dsn, "INSERT INTO api_keys (user_id, name, key_hash, key_prefix) VALUES (%s, %s, %s, 'sk-...')", (owner, name, key_hash))
    # A workshop key of that user, which the portal does not show.
    wanted = {"key_alias": f"virtkey-{tag}-user1", "user_id": f"owner-{tag}@example.com", "models": ["granite-3-8b"], "max_budget": 5}
    status, workshop = day2.proxy.admin("POST", "/key/generate", wanted)
    assert status == 200, workshop

    def active():
        rows = sql(dsn, "SELECT name, is_active FROM api_keys WHERE user_id = %s AND name LIKE %s", (owner, f"%-{tag}"))
        return {r["name"]: r["is_active"] for r in rows}

    env = day2.env()
    dry = sh("ansible-playbook rhpds.litemaas.key_sync -e litemaas_key_sync_dry_run=true", env, cwd)
    assert "Would deactivate 1 portal key(s), would import 0 proxy key(s)" in dry.stdout, dry.stdout[-3000:]
    assert "Dry run only: nothing changed." in dry.stdout
    assert active() == {f"live-{tag}": True, f"gone-{tag}": True}

    fix = sh("ansible-playbook rhpds.litemaas.key_sync", env, cwd)
    assert "Deactivated 1 portal key(s), imported 0 proxy key(s)" in fix.stdout, fix.stdout[-3000:]
    assert active() == {f"live-{tag}": True, f"gone-{tag}": False}
    assert sql(dsn, "SELECT revoked_at IS NOT NULL AS revoked FROM api_keys WHERE name = %s", (f"gone-{tag}",)) == [{"revoked": True}]

    imported = "ansible-playbook rhpds.litemaas.key_sync -e litemaas_key_sync_import_keys=true -e litemaas_key_sync_alias_prefix=virtkey-"
    first = sh(imported, env, cwd)
    assert re.search(r"imported [1-9]\d* proxy key\(s\)", first.stdout), first.stdout[-3000:]
    rows = sql(dsn, "SELECT k.id::text AS id, k.user_id::text AS user_id, k.key_hash, k.max_budget, k.is_active FROM api_keys k"
                    " WHERE k.litellm_key_alias = %s", (f"virtkey-{tag}-user1",))
    assert [(r["user_id"], r["key_hash"], float(r["max_budget"]), r["is_active"]) for r in rows] == [(owner, workshop["token"], 5.0, True)], rows
    models = sql(dsn, "SELECT model_id FROM api_key_models WHERE api_key_id = %s", (rows[0]["id"],))
    assert [m["model_id"] for m in models] == ["granite-3-8b"]
    assert day2.proxy.master_key not in first.stdout and day2.portal_dsn.rsplit("/", 1)[1] not in first.stdout
    # Nothing is left to fix or import: the same line again changes nothing.
    again = sh(imported, env, cwd)
    assert recap(again.stdout)["changed"] == 0 and "In sync: nothing to do." in again.stdout, again.stdout[-3000:]


# ---------------------------------------------------------------- portal admins (docs/day2.md, playbooks/portal_admins.yml)

PORTAL_ADMINS = (
    """ansible-playbook rhpds.litemaas.portal_admins -e '{"litemaas_portal_admins": [ {"email": "lead@example.com"},"""
    """ {"username": "auditor", "role": "adminReadonly"}, {"username": "former-lead", "state": "absent"}]}'""",
    """ansible-playbook rhpds.litemaas.portal_admins -e '{"litemaas_portal_admins": [{"email": "lead@example.com"},"""
    """ {"username": "auditor", "role": "adminReadonly"}, {"username": "former-lead", "state": "absent"}]}'""",
)


def test_portal_admins_commands_grant_and_revoke(day2):
    dsn, cwd, env = day2.portal_dsn, day2.workdir("portal-admins"), day2.env()
    lead = add_user(dsn, "lead", "lead@example.com")
    auditor = add_user(dsn, "auditor", "auditor@example.com")
    former = add_user(dsn, "former-lead", "former-lead@example.com", roles=("user", "admin"))
    bystander = add_user(dsn, "bystander", "bystander@example.com", roles=("user", "admin"))

    def roles():
        rows = sql(dsn, "SELECT id::text AS id, roles FROM users WHERE id = ANY(%s::uuid[])", ([lead, auditor, former, bystander],))
        return {r["id"]: r["roles"] for r in rows}

    first = sh(PORTAL_ADMINS[0], env, cwd)  # docs/day2.md
    assert recap(first.stdout)["changed"] == 1 and recap(first.stdout)["failed"] == 0
    # adminReadonly is written as the portal's role name, admin-readonly.
    assert roles() == {lead: ["user", "admin"], auditor: ["user", "admin-readonly"], former: ["user"], bystander: ["user", "admin"]}
    assert day2.portal_dsn.rsplit("/", 1)[1] not in first.stdout
    # playbooks/portal_admins.yml writes the same list: nothing left to change.
    again = sh(PORTAL_ADMINS[1], env, cwd)
    assert recap(again.stdout)["changed"] == 0, again.stdout[-3000:]
    assert roles()[lead] == ["user", "admin"]


# ---------------------------------------------------------------- models (docs/day2.md, playbooks/models.yml, docs/model-serving.md)

def models_yml() -> str:
    """The models.yml docs/day2.md shows."""
    text = (REPO / "docs" / "day2.md").read_text()
    return re.search(r"## Models\n\n```yaml\n# models.yml\n(.*?)```", text, re.S).group(1)


def model_info(proxy) -> dict:
    status, body = proxy.admin("GET", "/model/info")
    assert status == 200, body
    return {m["model_name"]: m for m in body["data"]}


def test_models_commands_register_the_list_and_the_served_models(day2, proxy_factory, stub_upstream):
    # A proxy of its own (the list gives granite-3-8b an in-cluster model server), with a model the list removes.
    proxy = proxy_factory(database="doc_day2_models_" + uuid.uuid4().hex[:8], models=[])
    status, body = proxy.admin("POST", "/model/new", {"model_name": "old-model", "litellm_params": {"model": "openai/old", "api_base": stub_upstream.url}})
    assert status == 200, body
    cwd, env = day2.workdir("models"), day2.env(proxy)
    (cwd / "models.yml").write_text(models_yml())
    day2.portal.litellm_api_url, day2.portal.litellm_database_url = proxy.url, proxy.dsn
    calls = len(day2.portal.calls)

    check = sh("ansible-playbook rhpds.litemaas.models -e @models.yml --check --diff", env, cwd)
    assert recap(check.stdout)["changed"] >= 1
    assert "granite-3-8b" in check.stdout and "old-model" in check.stdout
    assert set(model_info(proxy)) == {"old-model"} and len(day2.portal.calls) == calls

    first = sh("ansible-playbook rhpds.litemaas.models -e @models.yml", env, cwd)
    models = model_info(proxy)
    assert set(models) == {"granite-3-8b", "nomic-embed"}, sorted(models)
    granite = models["granite-3-8b"]
    assert granite["litellm_params"]["model"] == "openai/granite-3-8b-instruct"
    assert granite["litellm_params"]["api_base"] == "http://granite-3-8b-predictor.llm-hosting.svc.cluster.local:8080/v1"
    assert granite["litellm_params"]["rpm"] == 600
    assert granite["model_info"]["mode"] == "chat" and granite["model_info"]["max_tokens"] == 8192
    assert granite["model_info"]["input_cost_per_token"] == pytest.approx(2e-7)
    assert models["nomic-embed"]["model_info"]["mode"] == "embedding"
    # The portal was told to sync, with the first admin key of Secret backend-secret.
    assert day2.portal.calls[calls:] == [("/api/v1/models/sync", f"Bearer {day2.admin_key}", {"forceUpdate": False, "markUnavailable": True})]
    assert "portal sync: done" in first.stdout and proxy.master_key not in first.stdout and day2.admin_key not in first.stdout
    # ... and the portal's models are the proxy's.
    assert 'portal sync: done: {\\"success\\": true, \\"totalModels\\": 2,' in first.stdout, first.stdout[-3000:]
    assert {r["id"] for r in sql(day2.portal_dsn, "SELECT id FROM models WHERE availability = 'available'")} == {"granite-3-8b", "nomic-embed"}

    again = sh("ansible-playbook rhpds.litemaas.models -e @models.yml", env, cwd)
    assert recap(again.stdout)["changed"] == 0, again.stdout[-3000:]
    assert len(day2.portal.calls) == calls + 1

    # docs/model-serving.md: every ready InferenceService of llm-hosting, its predictor Service here the stub.
    for obj in (vllm_runtime("llm-hosting"),
                inference_service("granite-3-2-8b-instruct", "llm-hosting", "vLLM", "vllm-runtime", address=stub_upstream.base_url,
                                  args=["--max-model-len=8192"]),
                inference_service("not-ready-yet", "llm-hosting", "vLLM", "vllm-runtime", ready=False, reason="ProgressDeadlineExceeded")):
        put(day2.fake, obj)
    discover = sh("ansible-playbook rhpds.litemaas.models -e litemaas_models_discover=true", env, cwd)
    models = model_info(proxy)
    served = models["granite-3-2-8b-instruct"]
    assert served["litellm_params"]["api_base"] == stub_upstream.base_url + "/v1"
    assert served["model_info"]["litemaas_source"] == "kserve" and served["model_info"]["litemaas_inference_service"] == "llm-hosting/granite-3-2-8b-instruct"
    assert served["model_info"]["max_tokens"] == 8192
    assert "not-ready-yet" not in models and "llm-hosting/not-ready-yet" in discover.stdout
    code, answer, dummy = proxy.request("POST", "/v1/chat/completions", {"model": "granite-3-2-8b-instruct", "messages": [{"role": "user", "content": "hi"}]},
                                        headers={"Authorization": f"Bearer {proxy.master_key}"})
    assert code == 200 and answer["choices"][0]["message"]["role"] == "assistant", answer
    assert len(day2.portal.calls) == calls + 2


def put(fake, obj):
    """Create obj (and its namespace) as another client would, then its status as KServe reports it."""
    namespace = obj["metadata"]["namespace"]
    if namespace not in fake.names("namespaces", ""):
        fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    fake.add({k: v for k, v in obj.items() if k != "status"})
    if obj.get("status"):
        resource = {"InferenceService": "inferenceservices", "ServingRuntime": "servingruntimes"}[obj["kind"]]
        fake.set_status(resource, namespace, obj["metadata"]["name"], obj["status"])


# ---------------------------------------------------------------- capacity check (docs/day2.md, playbooks/capacity_check.yml, docs/deployment.md)

def test_capacity_check_commands_report_and_clean_up(day2):
    cwd, env = day2.workdir("capacity"), day2.env()
    short = "ansible-playbook rhpds.litemaas.capacity_check -e capacity_check_model=granite-3-8b -e capacity_check_attendees=60"
    for line, limit in ((short, "5"), (short + " -e capacity_check_requests_per_attendee=3 -e capacity_check_ttft_p95_threshold=3", "3")):
        before = day2.keys(prefix="capacity-check-")
        proc = sh(line, env, cwd)
        assert re.search(rf"PASS: 180 requests by 60 attendees to granite-3-8b, TTFT p50 [0-9.]+ s / p95 [0-9.]+ s \(limit {limit} s\), "
                         r"errors 0\.0% \(limit 1\.0%\)", proc.stdout), proc.stdout[-3000:]
        assert 'Errors by kind: {}' in proc.stdout
        # The temporary keys (one per attendee) were used and are gone.
        assert day2.keys(prefix="capacity-check-") == before == {}
        assert not re.search(r"sk-[A-Za-z0-9_-]{16,}", proc.stdout)


# ---------------------------------------------------------------- workshop keys (docs/workshop.md)

def test_workshop_keys_commands_provision_extend_and_destroy(day2):
    cwd = day2.workdir("workshop")
    env = day2.env(API=day2.proxy.url, MASTER=day2.proxy.master_key)
    provision = ("ansible-playbook rhpds.litemaas.workshop_keys -e guid=abc12 -e num_users=30 -e litellm_url=$API -e litellm_master_key=$MASTER"
                 """ -e '{"ocp4_workload_litellm_virtual_keys_models": ["granite-3-8b"]}' -e ocp4_workload_litellm_virtual_keys_rpm_limit=30"""
                 " -e ocp4_workload_litellm_virtual_keys_max_budget=5")
    first = sh(provision, env, cwd)
    keys = day2.keys(prefix="virtkey-abc12")
    assert sorted(keys) == sorted(f"virtkey-abc12-user{n}" for n in range(1, 31)), sorted(keys)
    for alias, key in keys.items():
        assert key["models"] == ["granite-3-8b"] and key["rpm_limit"] == 30 and key["max_budget"] == 5, (alias, key)
        assert key["user_id"] == f"{alias.rsplit('-', 1)[1]}-abc12@lab.opentlc.com"
    # The key store: Secret litellm-virtual-keys-abc12 in the litemaas namespace, a secret per key whose hash the proxy has.
    secret = day2.fake.objects[("secrets", NS, "litellm-virtual-keys-abc12")]
    store = yaml.safe_load(base64.b64decode(secret["data"]["keys.json"]))["keys"]
    assert set(store) == set(keys)
    assert all(hashlib.sha256(e["key"].encode()).hexdigest() == keys[a]["token"] for a, e in store.items())
    assert day2.proxy.master_key not in first.stdout and not re.search(r"sk-[A-Za-z0-9_-]{16,}", first.stdout)
    # The same line again changes nothing and hands out the same keys.
    again = sh(provision, env, cwd)
    assert recap(again.stdout)["changed"] == 0, again.stdout[-3000:]
    assert yaml.safe_load(base64.b64decode(day2.fake.objects[("secrets", NS, "litellm-virtual-keys-abc12")]["data"]["keys.json"]))["keys"] == store

    start = datetime.now(timezone.utc)
    sh("ansible-playbook rhpds.litemaas.workshop_keys -e ACTION=extend -e guid=abc12 -e litellm_url=$API -e litellm_master_key=$MASTER"
       " -e ocp4_workload_litellm_virtual_keys_extend_duration=2d", env, cwd)
    end = datetime.now(timezone.utc)
    expiries = [expires(k) for k in day2.keys(prefix="virtkey-abc12").values()]
    assert len(expiries) == 30 and all(start + timedelta(days=2, seconds=-5) <= e <= end + timedelta(days=2, seconds=5) for e in expiries), expiries
    sh("ansible-playbook rhpds.litemaas.workshop_keys -e ACTION=extend -e guid=abc12 -e litellm_url=$API -e litellm_master_key=$MASTER"
       " -e ocp4_workload_litellm_virtual_keys_expires=2030-12-31T18:00:00Z", env, cwd)
    fixed = datetime(2030, 12, 31, 18, tzinfo=timezone.utc)
    expiries = [expires(k) for k in day2.keys(prefix="virtkey-abc12").values()]
    assert len(expiries) == 30 and all(abs((e - fixed).total_seconds()) <= 5 for e in expiries), expiries

    destroy = "ansible-playbook rhpds.litemaas.workshop_keys -e ACTION=destroy -e guid=abc12 -e litellm_url=$API -e litellm_master_key=$MASTER"
    sh(destroy, env, cwd)
    assert day2.keys(prefix="virtkey-abc12") == {}
    assert "litellm-virtual-keys-abc12" not in day2.fake.names("secrets", NS)
    again = sh(destroy, env, cwd)
    assert recap(again.stdout)["changed"] == 0, again.stdout[-3000:]


def expires(key: dict) -> datetime:
    return datetime.fromisoformat(key["expires"].replace("Z", "+00:00"))


# ---------------------------------------------------------------- curl lines (docs/deployment.md, docs/troubleshooting.md, docs/proxy-routing.md)

def test_curl_commands_read_the_proxy(day2):
    cwd = day2.workdir("curl")
    env = day2.env(API=day2.proxy.url, MASTER=day2.proxy.master_key)
    # docs/deployment.md, "Verify": the proxy is ready (database and Redis), and lists its models.
    ready = yaml.safe_load(sh("curl -s $API/health/readiness", env, cwd).stdout)
    assert ready["status"] == "healthy" and ready["db"] == "connected", ready
    listed = yaml.safe_load(sh('curl -s $API/v1/models -H "Authorization: Bearer $MASTER"', env, cwd).stdout)
    assert {"stub-model", "granite-3-8b", "stub-embed", "docling"} <= {m["id"] for m in listed["data"]}, listed

    # docs/troubleshooting.md, item 9: the key the reader pastes, its state, and the key found by its alias.
    alias = "virtkey-abc12-user1"
    status, key = day2.proxy.admin("POST", "/key/generate", {"key_alias": alias, "models": ["granite-3-8b", "docling"], "max_budget": 20})
    assert status == 200, key
    try:
        block = [text_of("read -rsp 'Key: ' KEY; echo"), text_of('curl -s $API/key/info -H "Authorization: Bearer $KEY" | python3 -m json.tool'),
                 text_of("ALIAS=virtkey-abc12-user1"),
                 text_of('curl -s "$API/key/list?key_alias=$ALIAS&return_full_object=true" -H "Authorization: Bearer $MASTER"')]
        proc = subprocess.run(["bash", "-c", "\n".join(block)], input=key["key"] + "\n", env=env, cwd=str(cwd), capture_output=True, text=True,
                              timeout=60, check=True)
        info_text, dummy, listed_text = proc.stdout.partition("\n}\n")
        info = yaml.safe_load(info_text.strip() + "\n}")
        assert info["info"]["key_alias"] == alias and info["info"]["models"] == ["granite-3-8b", "docling"], info
        assert info["info"]["max_budget"] == 20 and not info["info"].get("blocked")
        found = yaml.safe_load(listed_text)
        assert [k["key_alias"] for k in found["keys"]] == [alias] and found["keys"][0]["token"] == key["token"], found
        # read -s shows nothing of what was pasted (the key in the output is /key/info's answer).
        assert proc.stdout.startswith("\n{\n") and key["key"] not in proc.stderr

        # docs/proxy-routing.md: the Docling pass-through, to the stub's echo of what it was sent.
        docling_env = dict(env, KEY=key["key"])
        (cwd / "report.pdf").write_bytes(b"%PDF-1.4\n% a report\n%%EOF\n")
        source = yaml.safe_load(sh("""curl -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d '{"http_sources": [{"url":"""
                                   """ "https://arxiv.org/pdf/2408.09869"}]}' $API/docling/v1/convert/source""", docling_env, cwd).stdout)
        assert source["path"] == "/v1/convert/source" and source["method"] == "POST" and source["content_type"] == "application/json", source
        assert source["received_bytes"] == len('{"http_sources": [{"url": "https://arxiv.org/pdf/2408.09869"}]}')
        upload = yaml.safe_load(sh('curl -H "Authorization: Bearer $KEY" -F files=@report.pdf $API/docling/v1/convert/file', docling_env, cwd).stdout)
        assert upload["path"] == "/v1/convert/file" and upload["content_type"].startswith("multipart/form-data"), upload
        assert [(p["name"], p["filename"], p["bytes"]) for p in upload["parts"]] == [("files", "report.pdf", (cwd / "report.pdf").stat().st_size)]
        assert upload["authorization"] != f"Bearer {key['key']}"  # the caller's key is not forwarded
    finally:
        day2.proxy.admin("POST", "/key/delete", {"keys": [key["token"]]})

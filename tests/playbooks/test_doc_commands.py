"""Every command line written in the docs, run exactly as written (tests/support/doc_commands.py finds them).

Each command the docs write is named here, once: in RUN (run by a test below, which checks what it should have done),
in CANNOT_RUN (with the reason it cannot run on this machine) or in NOT_RUN_YET (with what running it needs; its test
is skipped and says so). A new command line in the docs that none of them names fails
``test_every_documented_command_is_named_here``, and so does a name that no longer is in the docs.

The commands run through ``bash -c`` as a reader pastes them, in a working directory of their own, with the
environment they need: the in-memory API server (tests/support/fake_k8s.py) named by ``$HOME/.kube/config``, which is
where ``kubernetes.core`` and ``oc`` look; an inventory with what a cluster here lacks (routes no DNS resolves, no image
build); this checkout as ``rhpds.litemaas`` on the collections path (``ansible_env``, so the file also runs with the
oldest supported ansible-core, tests/support/ansible_core.py).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.playbooks.conftest import REPO, load_docs, recap
from tests.support.doc_commands import documented_commands
from tests.support.fake_k8s import FakeKubernetes

DOMAIN = "apps.example.com"
NS = "litemaas"

# ---------------------------------------------------------------- what is run here, and what cannot be

RENDER = {
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_render_dir=/tmp/litemaas": "render",
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_render_dir=/tmp/litemaas-render -e ocp4_workload_litemaas_namespace=litemaas"
    " -e ocp4_workload_litemaas_cluster_domain=apps.cluster.example.com": "render",
    "ls /tmp/litemaas-render": "render",
}
INSTALL = {
    "ansible-galaxy collection build . && ansible-galaxy collection install rhpds-litemaas-*.tar.gz": "install",
    "pip install kubernetes": "install",
}
CLUSTER = {
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas --check --diff": "cluster",
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas": "cluster",
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas"
    """ -e '{"ocp4_workload_litemaas_initial_admin_users": ["alice"]}'""": "cluster",
    "ansible-playbook rhpds.litemaas.backup": "cluster",
    "ansible-playbook rhpds.litemaas.backup -e ocp4_workload_litemaas_namespace=litemaas": "cluster",
    """ansible-playbook rhpds.litemaas.backup -e '{"litemaas_backup_schedule": "0 3 * * *"}'""": "cluster",
    """ansible-playbook rhpds.litemaas.backup -e '{"litemaas_backup_schedule": "0 3 * * *"}' -e litemaas_backup_keep=14""": "cluster",
    "ansible-playbook rhpds.litemaas.key_cleanup -e litemaas_key_cleanup_state=absent": "cluster",
    "ansible-playbook rhpds.litemaas.destroy -e ocp4_workload_litemaas_namespace=litemaas": "cluster",
}
RUN = {**RENDER, **INSTALL, **CLUSTER}

CANNOT_RUN = {
    "bash scripts/local.sh": "builds llama.cpp (about 30 minutes) and downloads a model; tests/integration/local runs the same "
                             "script with a stand-in model server",
    "bash scripts/test.sh": "the whole suite: CI's own command (.ci/run)",
    "ansible-galaxy collection install rhpds.litemaas": "needs Galaxy or an Automation Hub; the install from a built tarball runs here",
    "oc -n openshift-monitoring edit configmap cluster-monitoring-config": "opens an editor",
    "oc adm top pods -n $NS": "needs a cluster's metrics API",
    "litemaas-proxy --host 0.0.0.0 --port 4000 [--config config.yaml] [--workers N]": "a usage line with optional parts in brackets",
    ".venv/bin/python bench/keys_bench.py [--count 1000] [--parallelism 16] [--json out.json]": "a usage line with optional parts in brackets",
    "ansible-playbook rhpds.litemaas.upgrade -e ocp4_workload_litemaas_namespace=litemaas -e ocp4_workload_litemaas_version=0.5.0"
    " [-e ocp4_workload_litemaas_proxy_image=quay.io/example/litemaas-proxy:0.2.0]": "a usage line with an optional part in brackets",
    "ansible-playbook rhpds.litemaas.workshop_keys -e guid=abc12 -e num_users=30 -e litellm_url=https://litellm.apps.example.com"
    " -e litellm_master_key=... [-e ACTION=provision|extend|destroy]": "a usage line with placeholders",
}

NOT_RUN_YET = {key: "not run by a test yet" for key in documented_commands() if key not in RUN and key not in CANNOT_RUN}
# What the ones left need (kept short and honest; each is reported as skipped).
NEEDS = (
    ("oc ", "an oc client against the in-memory API server (logs, exec and rollout need a kubelet the in-memory server does not have)"),
    ("curl ", "the real proxy on loopback with the routes' host names"),
    ("psql_", "the portal database through oc exec"),
    (".venv/bin/python bench/", "a benchmark run (minutes; tests/reliability/test_load_script.py and test_burst_script.py run the scripts "
                                "with short durations)"),
)


def _reason(key: str) -> str:
    for prefix, need in NEEDS:
        if prefix in key:
            return f"not run by a test yet: needs {need}"
    return "not run by a test yet"


def test_every_documented_command_is_named_here():
    documented = documented_commands()
    named = set(RUN) | set(CANNOT_RUN)
    new = sorted(k for k in documented if k not in named and k not in NOT_RUN_YET)
    assert not new, f"command lines in the docs that this test does not know: {new}"
    stale = sorted(k for k in named if k not in documented)
    assert not stale, f"named here but no longer in the docs: {stale}"
    assert not set(RUN) & set(CANNOT_RUN)


@pytest.mark.parametrize("key", sorted(NOT_RUN_YET))
def test_documented_command_not_run_yet(key):
    pytest.skip(f"{_reason(key)} ({', '.join(documented_commands()[key].places)})")


# ---------------------------------------------------------------- running a command as written

def text_of(key: str) -> str:
    """The command as the docs write it (continuations and all)."""
    return documented_commands()[key].text


def sh(key: str, env: dict, cwd: Path, rc: int = 0, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-c", text_of(key)], env=env, cwd=str(cwd), capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == rc, f"{key}\nexited {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return proc


def inventory(root: Path, group_vars: dict | None = None) -> Path:
    """An inventory naming localhost (with this virtualenv's Python, which has the modules' libraries) and group_vars."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "hosts.ini").write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    if group_vars:
        (root / "group_vars").mkdir(exist_ok=True)
        (root / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars))
    return root


# ---------------------------------------------------------------- render mode (fixed paths under /tmp, as written)

def _render_manifests(root: Path) -> dict:
    return {str(p.relative_to(root)): load_docs(p) for p in sorted(root.rglob("*.yaml"))}


def test_render_commands_write_every_manifest(ansible_env, tmp_path):
    env = dict(ansible_env, ANSIBLE_INVENTORY=str(inventory(tmp_path / "inventory")))
    # The docs name fixed directories under /tmp: one run at a time on this machine, and nothing of ours left there.
    with open("/tmp/litemaas-doc-commands.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for target in ("/tmp/litemaas", "/tmp/litemaas-render"):
                shutil.rmtree(target, ignore_errors=True)
            sh("ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_render_dir=/tmp/litemaas", env, tmp_path)
            plain = _render_manifests(Path("/tmp/litemaas"))
            key = [k for k in RENDER if "litemaas-render" in k and k.startswith("ansible-playbook")][0]
            sh(key, env, tmp_path)
            listing = sh("ls /tmp/litemaas-render", env, tmp_path).stdout.split()
            rendered = _render_manifests(Path("/tmp/litemaas-render"))
        finally:
            for target in ("/tmp/litemaas", "/tmp/litemaas-render"):
                shutil.rmtree(target, ignore_errors=True)
    # "01-namespace ... 09-frontend, in deployment order"
    assert listing[0] == "01-namespace" and listing[-1] == "09-frontend" and listing == sorted(listing), listing
    assert len(listing) == 9 and all(name[:2] == f"{i:02d}" for i, name in enumerate(listing, start=1)), listing
    for docs in (plain, rendered):
        namespaces = [d for path, ds in docs.items() for d in ds if d["kind"] == "Namespace"]
        assert [n["metadata"]["name"] for n in namespaces] == [NS]
        kinds = {d["kind"] for ds in docs.values() for d in ds}
        assert {"Deployment", "StatefulSet", "Route", "Secret", "Service"} <= kinds, kinds
    hosts = sorted(d["spec"]["host"] for ds in rendered.values() for d in ds if d["kind"] == "Route")
    assert hosts and all(h.endswith(".apps.cluster.example.com") for h in hosts), hosts


# ---------------------------------------------------------------- installing the collection

def test_install_commands_install_the_collection(ansible_env, tmp_path):
    # A copy of the checkout as a user has it (no virtualenv, no test data), built and installed where
    # ANSIBLE_COLLECTIONS_PATH points first.
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(".venv", ".work", ".git", "local-data", "*.tar.gz", "__pycache__"))
    installed = tmp_path / "installed"
    env = dict(ansible_env, ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([str(installed)] + ansible_env["ANSIBLE_COLLECTIONS_PATH"].split(os.pathsep)[1:]))
    out = sh("ansible-galaxy collection build . && ansible-galaxy collection install rhpds-litemaas-*.tar.gz", env, checkout).stdout
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    assert f"rhpds.litemaas:{version} was installed successfully" in out, out
    target = installed / "ansible_collections" / "rhpds" / "litemaas"
    assert sorted(p.name for p in (target / "playbooks").glob("*.yml")) == sorted(p.name for p in (REPO / "playbooks").glob("*.yml"))
    assert (target / "MANIFEST.json").is_file() and not (target / ".venv").exists()
    # The dependency kubernetes.core needs: already there in this virtualenv (pip finds it and changes nothing).
    pip = sh("pip install kubernetes", ansible_env, tmp_path).stdout
    assert "Requirement already satisfied: kubernetes" in pip, pip


# ---------------------------------------------------------------- against the in-memory API server

@pytest.fixture()
def cluster_home(tmp_path, ansible_env):
    """(server, env): ``$HOME/.kube/config`` names the in-memory API server, which has the cluster's ingress domain."""
    fake = FakeKubernetes().start()
    fake.add({"apiVersion": "config.openshift.io/v1", "kind": "Ingress", "metadata": {"name": "cluster"}, "spec": {"domain": DOMAIN}})
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(yaml.safe_dump(fake.kubeconfig()))
    # What this machine's cluster lacks, as a user's inventory would say: route hosts no DNS resolves, no image build
    # (the proxy image named), pods that are ready at once (a short wait).
    hosts = inventory(tmp_path / "inventory", {"ocp4_workload_litemaas_verify_routes": False,
                                               "ocp4_workload_litemaas_proxy_image": "quay.io/example/litemaas-proxy:1.0",
                                               "ocp4_workload_litemaas_wait_timeout": 60, "litemaas_backup_wait_timeout": 60})
    env = dict(ansible_env, HOME=str(home), ANSIBLE_INVENTORY=str(hosts), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    env.pop("KUBECONFIG", None)
    yield fake, env
    fake.stop()


def _writes(fake) -> list:
    return [r for r in fake.requests if r["method"] in ("POST", "PUT", "PATCH", "DELETE") and r["query"].get("dryRun") != "All"]


def test_cluster_commands_deploy_back_up_and_destroy(cluster_home, tmp_path):
    fake, env = cluster_home
    deploy = "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas"
    # docs/deployment.md: --check --diff before a first install reports what it would create and writes nothing.
    check = sh(deploy + " --check --diff", env, tmp_path)
    assert "StatefulSet/litellm-postgres" in check.stdout and recap(check.stdout)["failed"] == 0
    assert {r["path"] for r in _writes(fake)} <= {"/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"}
    assert fake.names("namespaces", "") == []
    # The deploy: every component, and the route hosts under the cluster's domain.
    first = sh(deploy, env, tmp_path)
    assert recap(first.stdout)["changed"] > 0
    assert fake.names("statefulsets", NS) == ["litellm-postgres"]
    assert {"litellm", "litellm-backend", "litellm-frontend", "litellm-redis"} <= set(fake.names("deployments", NS))
    assert fake.objects[("routes", NS, "litellm")]["spec"]["host"].endswith("." + DOMAIN)
    # docs/deployment.md: the first admins, given as JSON; the rest of the deploy unchanged.
    admins = sh(deploy + """ -e '{"ocp4_workload_litemaas_initial_admin_users": ["alice"]}'""", env, tmp_path)
    assert recap(admins.stdout)["failed"] == 0
    backend_env = {e["name"]: e.get("value") for e in
                   fake.objects[("deployments", NS, "litellm-backend")]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert backend_env.get("INITIAL_ADMIN_USERS") == "alice", backend_env
    # docs/day2.md, docs/migration.md, playbooks/backup.yml: a backup now (both spellings), then the nightly schedule.
    sh("ansible-playbook rhpds.litemaas.backup", env, tmp_path)
    sh("ansible-playbook rhpds.litemaas.backup -e ocp4_workload_litemaas_namespace=litemaas", env, tmp_path)
    jobs = fake.names("jobs", NS)
    assert len([j for j in jobs if j.startswith("litemaas-backup-")]) == 2, jobs
    sh("""ansible-playbook rhpds.litemaas.backup -e '{"litemaas_backup_schedule": "0 3 * * *"}'""", env, tmp_path)
    cron = fake.objects[("cronjobs", NS, "litemaas-backup")]
    assert cron["spec"]["schedule"] == "0 3 * * *"
    sh("""ansible-playbook rhpds.litemaas.backup -e '{"litemaas_backup_schedule": "0 3 * * *"}' -e litemaas_backup_keep=14""", env, tmp_path)
    cron = fake.objects[("cronjobs", NS, "litemaas-backup")]
    assert cron["spec"]["schedule"] == "0 3 * * *"
    assert "14" in yaml.safe_dump(cron["spec"]["jobTemplate"]), cron["spec"]["jobTemplate"]
    # docs/day2.md, docs/deployment.md: the key cleanup CronJob removed (there is none yet: nothing to do, no failure).
    absent = sh("ansible-playbook rhpds.litemaas.key_cleanup -e litemaas_key_cleanup_state=absent", env, tmp_path)
    assert recap(absent.stdout)["failed"] == 0 and "litemaas-key-cleanup" not in fake.names("cronjobs", NS)
    # docs/deployment.md, docs/deploy-role.md, playbooks/destroy.yml: everything goes, with the role's namespace.
    sh("ansible-playbook rhpds.litemaas.destroy -e ocp4_workload_litemaas_namespace=litemaas", env, tmp_path)
    assert fake.names("namespaces", "") == [] and not [k for k in fake.objects if k[1] == NS]

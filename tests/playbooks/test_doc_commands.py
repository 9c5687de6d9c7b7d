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
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.playbooks.conftest import REPO, load_docs
from tests.support.doc_commands import documented_commands, inventory, sh

NS = "litemaas"

# ---------------------------------------------------------------- what is run here, and what cannot be

# {command: the test that runs it as written}
RENDER = "test_render_commands_write_every_manifest"
INSTALL = "test_install_commands_install_the_collection"
CLUSTER = "tests/playbooks/test_doc_commands_cluster.py::test_cluster_commands_deploy_operate_and_destroy"
RUN = {
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_render_dir=/tmp/litemaas": RENDER,
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_render_dir=/tmp/litemaas-render -e ocp4_workload_litemaas_namespace=litemaas"
    " -e ocp4_workload_litemaas_cluster_domain=apps.cluster.example.com": RENDER,
    "ls /tmp/litemaas-render": RENDER,
    "ansible-playbook rhpds.litemaas.model_serving -e ocp4_workload_litemaas_render_dir=/tmp/models -e @models.yml": RENDER,
    "ansible-galaxy collection build . && ansible-galaxy collection install rhpds-litemaas-*.tar.gz": INSTALL,
    "pip install kubernetes": INSTALL,
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas --check --diff": CLUSTER,
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas": CLUSTER,
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas"
    """ -e '{"ocp4_workload_litemaas_initial_admin_users": ["alice"]}'""": CLUSTER,
    "ansible-playbook rhpds.litemaas.upgrade -e ocp4_workload_litemaas_namespace=litemaas -e ocp4_workload_litemaas_version=0.5.0"
    " -e ocp4_workload_litemaas_proxy_image=quay.io/example/litemaas-proxy:0.2.0": CLUSTER,
    """ansible-playbook rhpds.litemaas.scale -e '{"litemaas_scale": {"proxy": 5, "frontend": 3}}'""": CLUSTER,
    "ansible-playbook rhpds.litemaas.backup": CLUSTER,
    "ansible-playbook rhpds.litemaas.backup -e ocp4_workload_litemaas_namespace=litemaas": CLUSTER,
    """ansible-playbook rhpds.litemaas.backup -e '{"litemaas_backup_schedule": "0 3 * * *"}'""": CLUSTER,
    """ansible-playbook rhpds.litemaas.backup -e '{"litemaas_backup_schedule": "0 3 * * *"}' -e litemaas_backup_keep=14""": CLUSTER,
    "ansible-playbook rhpds.litemaas.key_cleanup": CLUSTER,
    "ansible-playbook rhpds.litemaas.key_cleanup -e ocp4_workload_litemaas_namespace=litemaas": CLUSTER,
    "ansible-playbook rhpds.litemaas.key_cleanup -e litemaas_key_cleanup_state=absent": CLUSTER,
    "ansible-playbook rhpds.litemaas.monitoring -e ocp4_workload_litemaas_monitoring_action=destroy": CLUSTER,
    "ansible-playbook rhpds.litemaas.destroy -e ocp4_workload_litemaas_namespace=litemaas": CLUSTER,
    "ansible-playbook rhpds.litemaas.model_serving -e @models.yml -e litemaas_model_serving_render_dir=\"$PWD/gitops\""
    " -e litemaas_model_serving_argocd_enabled=true -e litemaas_model_serving_argocd_repo_url=https://git.example.com/platform/models.git":
        "tests/playbooks/test_model_serving.py::test_gitops_command_line_of_the_docs_renders_the_example",
}

CANNOT_RUN = {
    "bash scripts/local.sh": "builds llama.cpp (about 30 minutes) and downloads a model; tests/integration/local runs the same "
                             "script with a stand-in model server",
    "bash scripts/test.sh": "the whole suite: CI's own command (.ci/run)",
    "ansible-galaxy collection install rhpds.litemaas": "needs Galaxy or an Automation Hub; the install from a built tarball runs here",
    "oc -n openshift-monitoring edit configmap cluster-monitoring-config": "opens an editor",
    "oc adm top pods -n $NS": "needs a cluster's metrics API",
    "litemaas-proxy --host 0.0.0.0 --port 4000 [--config config.yaml] [--workers N]": "a usage line with optional parts in brackets",
    ".venv/bin/python bench/keys_bench.py [--count 1000] [--parallelism 16] [--json out.json]": "a usage line with optional parts in brackets",
    "ansible-playbook rhpds.litemaas.workshop_keys -e guid=abc12 -e num_users=30 -e litellm_url=https://litellm.apps.example.com"
    " -e litellm_master_key=... [-e ACTION=provision|extend|destroy]": "a usage line with placeholders",
}

NOT_RUN_YET = {key: "not run by a test yet" for key in documented_commands() if key not in RUN and key not in CANNOT_RUN}
# What the ones left need (kept short and honest; each is reported as skipped).
NEEDS = (
    ("rhpds.litemaas.restore ", "the restore to finish on the in-memory API server (it waits there; "
                                "tests/playbooks/test_boolean_switches.py runs playbooks/restore.yml's line up to the cluster)"),
    ("rhpds.litemaas.model_serving ", "KServe to report the InferenceServices Ready on the in-memory API server "
                                      "(tests/playbooks/test_model_serving_cluster.py writes that status by hand)"),
    ("rhpds.litemaas.key_sync", "the portal database and the proxy reachable as a cluster names them "
                                "(tests/playbooks/test_boolean_switches.py runs these lines with a connection file added)"),
    ("litemaas_key_cleanup_run_now=true", "the run's pod log, which the in-memory API server cannot give (no kubelet)"),
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
    for test in set(RUN.values()):
        path, _, name = test.rpartition("::")
        assert f"\ndef {name}(" in (REPO / (path or "tests/playbooks/test_doc_commands.py")).read_text(), f"{test} runs no command: it does not exist"


@pytest.mark.parametrize("key", sorted(NOT_RUN_YET))
def test_documented_command_not_run_yet(key):
    pytest.skip(f"{_reason(key)} ({', '.join(documented_commands()[key].places)})")


# ---------------------------------------------------------------- render mode (fixed paths under /tmp, as written)

def _render_manifests(root: Path) -> dict:
    return {str(p.relative_to(root)): load_docs(p) for p in sorted(root.rglob("*.yaml"))}


TMP_DIRS = ("/tmp/litemaas", "/tmp/litemaas-render", "/tmp/models")


def test_render_commands_write_every_manifest(ansible_env, tmp_path):
    env = dict(ansible_env, ANSIBLE_INVENTORY=str(inventory(tmp_path / "inventory")))
    # The docs name fixed directories under /tmp: one run at a time on this machine, and nothing of ours left there.
    # The models.yml docs/model-serving.md shows, where the command runs.
    text = (REPO / "docs" / "model-serving.md").read_text()
    (tmp_path / "models.yml").write_text(re.search(r"with `models.yml` like:\n\n```yaml\n(.*?)```", text, re.S).group(1))
    with open("/tmp/litemaas-doc-commands.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for target in TMP_DIRS:
                shutil.rmtree(target, ignore_errors=True)
            sh("ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_render_dir=/tmp/litemaas", env, tmp_path)
            plain = _render_manifests(Path("/tmp/litemaas"))
            sh("ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_render_dir=/tmp/litemaas-render -e ocp4_workload_litemaas_namespace=litemaas"
               " -e ocp4_workload_litemaas_cluster_domain=apps.cluster.example.com", env, tmp_path)
            listing = sh("ls /tmp/litemaas-render", env, tmp_path).stdout.split()
            rendered = _render_manifests(Path("/tmp/litemaas-render"))
            sh("ansible-playbook rhpds.litemaas.model_serving -e ocp4_workload_litemaas_render_dir=/tmp/models -e @models.yml", env, tmp_path)
            models = _render_manifests(Path("/tmp/models"))
        finally:
            for target in TMP_DIRS:
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
    # playbooks/model_serving.yml: the models of models.yml as InferenceServices, with their runtimes.
    services = sorted(d["metadata"]["name"] for ds in models.values() for d in ds if d["kind"] == "InferenceService")
    assert services == ["granite-3-2-8b-instruct", "nomic-embed-text-v1-5", "phi-mini"], services
    assert {d["kind"] for ds in models.values() for d in ds} >= {"InferenceService", "ServingRuntime"}


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

"""Day-2 roles and the manifest pipeline: argument specs refuse wrong variables before anything runs, thin playbooks,
one connection through the action group, and the pipeline's render mode (pruning, check mode, file modes, bad input)."""

from __future__ import annotations

import json
import re
import stat

import pytest
import yaml

from tests.playbooks.conftest import PLAYBOOKS, REPO, load_dir, recap
from tests.support import k8s_schemas

ROLES = REPO / "roles"
DAY2_ROLES = {
    "backup.yml": "litemaas_backup", "restore.yml": "litemaas_restore", "scale.yml": "litemaas_scale", "upgrade.yml": "litemaas_upgrade",
    "models.yml": "litemaas_models", "key_sync.yml": "litemaas_key_sync", "portal_admins.yml": "litemaas_portal_admins",
    "key_cleanup.yml": "litemaas_key_cleanup", "capacity_check.yml": "litemaas_capacity_check",
    "monitoring.yml": "ocp4_workload_litemaas_monitoring",
}
# The roles of the manifest pipeline, the connection and day-2 (the deploy role has its own test in tests/roles).
PIPELINE_ROLES = sorted({"litemaas_manifests", "litemaas_connection"} | set(DAY2_ROLES.values()))


def _yaml(path):
    with open(path) as fh:
        return yaml.safe_load(fh)


@pytest.mark.parametrize("playbook_name, role", sorted(DAY2_ROLES.items()))
def test_day2_playbooks_are_thin_and_run_their_role(playbook_name, role):
    plays = _yaml(PLAYBOOKS / playbook_name)
    assert len(plays) == 1, playbook_name
    play = plays[0]
    roles = [r["role"] if isinstance(r, dict) else r for r in play.get("roles", [])]
    tasks = play.get("tasks", [])
    included = [t["ansible.builtin.include_role"]["name"] for t in tasks if "ansible.builtin.include_role" in t]
    assert roles + included == [f"rhpds.litemaas.{role}"], playbook_name
    assert "vars" not in play and "module_defaults" not in play, playbook_name
    assert (ROLES / role / "meta" / "argument_specs.yml").is_file()


def test_no_role_or_playbook_repeats_the_proxy_connection_options():
    """The litemaas action group gets api_url / api_key from module_defaults (set once by the litemaas_connection role)."""
    offenders = []
    paths = [p for role in PIPELINE_ROLES for p in (ROLES / role / "tasks").glob("*.yml")]
    for path in sorted(paths + [p for p in PLAYBOOKS.glob("*.yml") if p.name != "workshop_keys.yml"]):
        for task in _walk(_yaml(path) or []):
            for name, args in task.items():
                if name.startswith("rhpds.litemaas.") and isinstance(args, dict) and {"api_url", "api_key"} & set(args):
                    offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert offenders == [], offenders
    uses = sum(p.read_text().count("group/rhpds.litemaas.litemaas") for p in ROLES.glob("litemaas_*/tasks/*.yml"))
    assert uses >= 3  # models, key_sync, capacity_check


def _walk(tasks):
    for task in tasks:
        if not isinstance(task, dict):
            continue
        yield task
        for key in ("block", "rescue", "always", "tasks"):
            yield from _walk(task.get(key) or [])


@pytest.mark.parametrize("role", PIPELINE_ROLES)
def test_argument_specs_match_defaults(role):
    """Every default is a documented option with a type, every optional option has its default in defaults/main.yml."""
    specs = _yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    defaults_path = ROLES / role / "defaults" / "main.yml"
    defaults = (_yaml(defaults_path) or {}) if defaults_path.exists() else {}
    options = {}
    for entry, spec in specs.items():
        assert spec.get("short_description"), (role, entry)
        for name, option in (spec.get("options") or {}).items():
            assert option.get("description") and option.get("type"), (role, entry, name)
            if option["type"] == "list":
                assert option.get("elements"), (role, entry, name)
            options[name] = option
    assert set(defaults) <= set(options), sorted(set(defaults) - set(options))
    for name, option in options.items():
        if not option.get("required"):
            assert name in defaults, (role, name)
            assert defaults[name] == option.get("default"), (role, name)
        assert name.startswith(role + "_"), (role, name)


@pytest.mark.parametrize("playbook_name, extra, words", [
    ("restore.yml", {"litemaas_restore_backup": "nightly-1", "litemaas_restore_databases": ["litemaas_db", "everything"]},
     ["litemaas_restore_databases", "everything", "litemaas_db, litellm_db"]),
    ("restore.yml", {}, ["missing required arguments: litemaas_restore_backup"]),
    ("key_cleanup.yml", {"litemaas_key_cleanup_state": "gone"}, ["litemaas_key_cleanup_state", "present, absent", "gone"]),
    ("backup.yml", {"litemaas_backup_keep": "many"}, ["litemaas_backup_keep", "int"]),
    ("scale.yml", {"litemaas_scale": ["proxy", 3]}, ["litemaas_scale_replicas", "dict"]),
    ("models.yml", {"litemaas_models_portal_sync": "sometimes"}, ["litemaas_models_portal_sync", "changed, always, never", "sometimes"]),
    ("capacity_check.yml", {"capacity_check_attendees": "a few"}, ["litemaas_capacity_check_attendees", "int"]),
    ("portal_admins.yml", {"litemaas_portal_admins": "lead@example.com"}, ["litemaas_portal_admins_users", "list"]),
])
def test_wrong_variables_fail_before_anything_runs(playbook, render_dir, playbook_name, extra, words):
    proc = playbook.run(playbook_name, dict(extra, ocp4_workload_litemaas_render_dir=str(render_dir)), expect_rc=2)
    for word in words:
        assert word in proc.stdout, (word, proc.stdout[-3000:])
    counts = recap(proc.stdout)
    assert counts["failed"] == 1 and counts["changed"] == 0, counts
    # The failed task is the argument check, the first task of the role.
    assert re.search(r"TASK \[rhpds\.litemaas\.\w+ : Validating arguments against arg spec", proc.stdout)
    assert list(render_dir.iterdir()) == []


def test_connection_role_asks_the_cluster_only_for_what_is_missing(playbook, tmp_path):
    """Given the proxy URL and master key, the cluster is not contacted; without the key it is (and here fails: no cluster)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}], "users": [{"name": "none", "user": {"token": "x"}}]}))
    base = {"litemaas_proxy_url": "http://127.0.0.1:9", "litemaas_models": [], "ocp4_workload_litemaas_k8s_kubeconfig": str(kubeconfig)}
    given = playbook.run("models.yml", dict(base, litemaas_master_key="sk-given"))
    assert re.search(r"Read the LiteMaaS routes\] \*+\nskipping: ", given.stdout), given.stdout[-3000:]
    assert "0 model(s) created, updated or removed" in given.stdout
    missing = playbook.run("models.yml", base, expect_rc=2)
    failed = re.findall(r"TASK \[rhpds\.litemaas\.litemaas_connection : ([^\]]+)\]", missing.stdout)
    assert failed[-1] == "Read the LiteMaaS routes", failed
    assert "127.0.0.1" in missing.stdout.split("Read the LiteMaaS routes", 1)[1]
    assert recap(missing.stdout)["failed"] == 1


# ---------------------------------------------------------------- the manifest pipeline in render mode

def _pipeline_play(tmp_path, files, render_dir, **extra):
    play = [{"name": "pipeline", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Run the manifest pipeline", "ansible.builtin.include_role": {"name": "rhpds.litemaas.litemaas_manifests"},
         "vars": dict({"litemaas_manifests_files": files, "litemaas_manifests_render_dir": str(render_dir),
                       "litemaas_manifests_label": "test"}, **extra)}]}]
    path = tmp_path / f"pipeline-{len(list(tmp_path.iterdir()))}.yml"
    path.write_text(json.dumps(play))
    return path


CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: x\ndata:\n  k: v\n"
SECRET = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: x\nstringData:\n  password: hunter2\n"


def test_pipeline_writes_prunes_and_keeps_secrets_private(playbook, tmp_path, render_dir):
    files = [{"path": "app/configmap.yaml", "content": CONFIGMAP}, {"path": "app/secret.yaml", "content": SECRET},
             {"path": "app/other.yaml", "content": CONFIGMAP.replace("name: a", "name: b")}]
    first = playbook.run_file(_pipeline_play(tmp_path, files, render_dir, litemaas_manifests_prune_dirs=["app"]))
    assert recap(first.stdout)["changed"] == 1
    assert stat.S_IMODE((render_dir / "app/secret.yaml").stat().st_mode) == 0o600
    assert stat.S_IMODE((render_dir / "app/configmap.yaml").stat().st_mode) == 0o644
    assert "hunter2" not in first.stdout
    k8s_schemas.assert_valid(render_dir, minimum=3)
    again = playbook.run_file(_pipeline_play(tmp_path, files, render_dir, litemaas_manifests_prune_dirs=["app"]))
    assert recap(again.stdout)["changed"] == 0
    # other.yaml is no longer rendered: check mode reports it, the run removes it; files outside prune_dirs stay.
    (render_dir / "keep.yaml").write_text(CONFIGMAP)
    check = playbook.run_file(_pipeline_play(tmp_path, files[:2], render_dir, litemaas_manifests_prune_dirs=["app"]), check=True)
    assert "would write: 0, would remove: 1" in check.stdout
    assert (render_dir / "app/other.yaml").exists()
    playbook.run_file(_pipeline_play(tmp_path, files[:2], render_dir, litemaas_manifests_prune_dirs=["app"]))
    assert sorted(load_dir(render_dir)) == ["app/configmap.yaml", "app/secret.yaml", "keep.yaml"]


def test_pipeline_refuses_a_file_that_is_not_a_manifest_and_writes_nothing(playbook, tmp_path, render_dir):
    files = [{"path": "app/configmap.yaml", "content": CONFIGMAP},
             {"path": "app/broken.yaml", "content": "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"}]
    proc = playbook.run_file(_pipeline_play(tmp_path, files, render_dir), expect_rc=2)
    assert "broken.yaml document 1 is not a Kubernetes object with apiVersion, kind and metadata.name" in proc.stdout
    assert list(render_dir.iterdir()) == []


def test_pipeline_absent_removes_the_files_and_directories(playbook, tmp_path, render_dir):
    files = [{"path": "app/configmap.yaml", "content": CONFIGMAP}]
    playbook.run_file(_pipeline_play(tmp_path, files, render_dir))
    assert (render_dir / "app/configmap.yaml").exists()
    playbook.run_file(_pipeline_play(tmp_path, files, render_dir, litemaas_manifests_state="absent", litemaas_manifests_prune_dirs=["app"]))
    assert not (render_dir / "app").exists()


def test_deploy_prune_selects_every_deploy_object_and_no_day2_object(playbook, work_dir):
    """After a deploy, the cluster prune selects objects by app.kubernetes.io/component among the deploy role's values:
    every object the deploy role renders must carry one of them, and no day-2 object may."""
    values = set(_yaml(ROLES / "ocp4_workload_litemaas" / "vars" / "main.yml")["__ocp4_workload_litemaas_prune_components"])
    out = work_dir / "render-prune-components"
    playbook.run("deploy.yml", {"ocp4_workload_litemaas_render_dir": str(out)})
    deploy = [o for objs in load_dir(out).values() for o in objs]
    assert len(deploy) > 20
    missing = sorted({f"{o['kind']}/{o['metadata']['name']}" for o in deploy
                      if o["kind"] not in ("Namespace", "OAuthClient")
                      and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") not in values})
    assert missing == [], missing
    day2 = work_dir / "render-prune-day2"
    playbook.run("backup.yml", {"ocp4_workload_litemaas_render_dir": str(day2), "litemaas_backup_schedule": "0 1 * * *"})
    playbook.run("key_cleanup.yml", {"ocp4_workload_litemaas_render_dir": str(day2), "ocp4_workload_litemaas_proxy_image": "quay.io/x/p:1"})
    playbook.run("restore.yml", {"ocp4_workload_litemaas_render_dir": str(day2), "litemaas_restore_backup": "b1"})
    objs = [o for docs in load_dir(day2).values() for o in docs]
    assert len(objs) >= 7
    k8s_schemas.assert_valid(day2, minimum=7)
    assert not [o["metadata"]["name"] for o in objs if o["metadata"]["labels"]["app.kubernetes.io/component"] in values]


@pytest.mark.parametrize("role", [r for r in PIPELINE_ROLES if r != "ocp4_workload_litemaas_monitoring"])
def test_day2_doc_lists_every_role_argument(role):
    """docs/day2.md names each role and every argument of it (the tables are generated from the argument specs)."""
    text = (REPO / "docs" / "day2.md").read_text()
    specs = _yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    assert f"`rhpds.litemaas.{role}`" in text
    for spec in specs.values():
        for name in spec.get("options") or {}:
            assert f"| `{name}` |" in text, (role, name)


def test_day2_render_in_check_mode_writes_nothing(playbook, render_dir):
    proc = playbook.run("backup.yml", {"ocp4_workload_litemaas_render_dir": str(render_dir), "litemaas_backup_name": "checked"}, check=True)
    assert "backup: 2 files in" in proc.stdout and "would write: 2, would remove: 0" in proc.stdout
    assert list(render_dir.iterdir()) == []
    playbook.run("backup.yml", {"ocp4_workload_litemaas_render_dir": str(render_dir), "litemaas_backup_name": "checked"})
    k8s_schemas.assert_valid(render_dir, minimum=2)
    again = playbook.run("backup.yml", {"ocp4_workload_litemaas_render_dir": str(render_dir), "litemaas_backup_name": "checked"}, check=True)
    assert "would write: 0, would remove: 0" in again.stdout


# ---------------------------------------------------------------- the manifest pipeline against an API server

@pytest.fixture()
def fake_cluster(tmp_path):
    from tests.support.fake_k8s import FakeKubernetes

    fake = FakeKubernetes().start()
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(fake.kubeconfig()))
    yield fake, kubeconfig
    fake.stop()


def _cluster_play(tmp_path, kubeconfig, files, **extra):
    play = [{"name": "pipeline", "hosts": "localhost", "gather_facts": False,
             "module_defaults": {"group/kubernetes.core.k8s": {"kubeconfig": str(kubeconfig)}},
             "tasks": [{"name": "Run the manifest pipeline", "ansible.builtin.include_role": {"name": "rhpds.litemaas.litemaas_manifests"},
                        "vars": dict({"litemaas_manifests_files": files, "litemaas_manifests_label": "test"}, **extra)}]}]
    path = tmp_path / f"cluster-{len(list(tmp_path.iterdir()))}.yml"
    path.write_text(json.dumps(play))
    return path


def _labelled(name, kind="ConfigMap", extra=None):
    labels = dict({"app.kubernetes.io/managed-by": "rhpds.litemaas"}, **(extra or {}))
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": "x", "labels": labels}}
    obj["data" if kind == "ConfigMap" else "stringData"] = {"k": "v-" + name}
    return yaml.safe_dump(obj)


def test_pipeline_applies_server_side_and_prunes_by_label(playbook, tmp_path, fake_cluster):
    fake, kubeconfig = fake_cluster
    prune = {"litemaas_manifests_prune_selector": ["app.kubernetes.io/managed-by=rhpds.litemaas"],
             "litemaas_manifests_prune_kinds": [{"api_version": "v1", "kind": "ConfigMap"}, {"api_version": "v1", "kind": "Secret"}]}
    files = [{"path": "a/one.yaml", "content": _labelled("one")}, {"path": "a/two.yaml", "content": _labelled("two")},
             {"path": "a/secret.yaml", "content": _labelled("pw", kind="Secret")}]
    first = playbook.run_file(_cluster_play(tmp_path, kubeconfig, files, **prune))
    assert fake.names("configmaps", "x") == ["kube-root-ca.crt", "one", "two"] and fake.names("secrets", "x") == ["pw"]
    patches = [r for r in fake.requests if r["method"] == "PATCH"]
    assert len(patches) == 3
    assert {(r["content_type"], r["query"].get("fieldManager"), r["query"].get("force")) for r in patches} == {
        ("application/apply-patch+yaml", "rhpds.litemaas", "true")}
    assert "v-pw" not in first.stdout  # the Secret is applied without output
    # An object of someone else (no label) is never pruned; "two" is no longer rendered and goes.
    fake.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "theirs", "namespace": "x"}})
    playbook.run_file(_cluster_play(tmp_path, kubeconfig, [files[0], files[2]], **prune))
    assert fake.names("configmaps", "x") == ["kube-root-ca.crt", "one", "theirs"] and fake.names("secrets", "x") == ["pw"]
    deletes = [r["path"] for r in fake.requests if r["method"] == "DELETE"]
    assert deletes == ["/api/v1/namespaces/x/configmaps/two"]
    # state absent deletes what is rendered and everything else the selector matches.
    playbook.run_file(_cluster_play(tmp_path, kubeconfig, [files[0]], litemaas_manifests_state="absent", **prune))
    assert fake.names("configmaps", "x") == ["kube-root-ca.crt", "theirs"] and fake.names("secrets", "x") == []


DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "x"},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "example/web:1"}]}}}}


def test_pipeline_waits_for_the_rollout(playbook, tmp_path, fake_cluster):
    """A Deployment is waited for and then checked Available with every replica ready; one that cannot be scheduled
    fails the pipeline once the progress timeout has passed (long before the wait timeout), saying why."""
    fake, kubeconfig = fake_cluster
    files = [{"path": "a/deployment.yaml", "content": yaml.safe_dump(DEPLOYMENT)}]
    ok = playbook.run_file(_cluster_play(tmp_path, kubeconfig, files))
    assert "Check every replica is ready in the workloads of test" in ok.stdout
    assert fake.objects[("deployments", "x", "web")]["spec"]["replicas"] == 2
    fake.stuck = True
    stuck = playbook.run_file(_cluster_play(tmp_path, kubeconfig, files, litemaas_manifests_progress_timeout=3), expect_rc=2)
    assert recap(stuck.stdout)["failed"] == 1
    message = _failure(stuck.stdout, "Fail on the rollouts and Jobs that cannot progress in test")
    assert message.startswith("Deployment/x/web does not progress after 3 s: pod web-"), message
    assert ("is not scheduled: Unschedulable: 0/1 nodes are available: 1 node(s) had untolerated taint "
            "{node.kubernetes.io/unschedulable: }.") in message
    # Without waiting, the apply alone succeeds.
    playbook.run_file(_cluster_play(tmp_path, kubeconfig, files, litemaas_manifests_wait=False))


def _failure(output: str, task: str) -> str:
    """The msg of the failed task, as ansible-playbook prints it."""
    block = output.split(f"TASK [rhpds.litemaas.litemaas_manifests : {task}]", 1)[1]
    line = next(li for li in block.splitlines() if li.startswith("fatal: [localhost]"))
    return json.loads(line.split("=> ", 1)[1])["msg"]


def test_a_rollout_held_by_an_image_pull_a_missing_storage_class_or_pod_security_fails_early_with_the_reasons(playbook, tmp_path, fake_cluster):
    """Each rollout names what holds it, read from its pods, its claims and the events about them (a refused pod leaves
    no pod, only the controller's FailedCreate event). The wait timeout is far away: only the progress timeout ends it."""
    fake, kubeconfig = fake_cluster
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "guarded", "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    fake.unpullable = {"example/missing:1"}
    fake.no_storage_class = True
    pull = yaml.safe_load(yaml.safe_dump(DEPLOYMENT).replace("example/web:1", "example/missing:1").replace("web", "pull"))
    refused = dict(yaml.safe_load(yaml.safe_dump(DEPLOYMENT)), metadata={"name": "web", "namespace": "guarded"})
    database = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "x"}, "spec": {
        "serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}},
        "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "example/db:1"}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}
    files = [{"path": f"a/{n}.yaml", "content": yaml.safe_dump(o)} for n, o in (("pull", pull), ("refused", refused), ("db", database))]
    proc = playbook.run_file(_cluster_play(tmp_path, kubeconfig, files, litemaas_manifests_progress_timeout=2, litemaas_manifests_wait_timeout=900),
                             expect_rc=2)
    message = _failure(proc.stdout, "Fail on the rollouts and Jobs that cannot progress in test")
    by_object = dict(re.findall(r"(\w+/[\w-]+/[\w-]+) does not progress after 2 s: (.*?)\.(?= \w+/[\w-]+/[\w-]+ does not|$)", message))
    assert sorted(by_object) == ["Deployment/guarded/web", "Deployment/x/pull", "StatefulSet/x/db"], message
    assert re.fullmatch(r'ReplicaSet web-[a-z0-9]+: FailedCreate: Error creating: pods "web-[a-z0-9-]+" is forbidden: violates PodSecurity '
                        r'"restricted:latest": allowPrivilegeEscalation != false \(container "web" must set securityContext\.allowPrivilegeEscalation=false\), '
                        r'.*seccompProfile \(pod or container "web" must set securityContext\.seccompProfile\.type to "RuntimeDefault" or "Localhost"\)',
                        by_object["Deployment/guarded/web"]), by_object["Deployment/guarded/web"]
    assert re.match(r'pod pull-[a-z0-9-]+ container pull: ImagePullBackOff: Back-off pulling image "example/missing:1"; '
                    r'pod pull-[a-z0-9-]+: Failed to pull image "example/missing:1": ', by_object["Deployment/x/pull"]), by_object["Deployment/x/pull"]
    assert by_object["StatefulSet/x/db"] == (
        "pod db-0 is not scheduled: Unschedulable: 0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: "
        "0/1 nodes are available: 1 Preemption is not helpful for scheduling.; PersistentVolumeClaim data-db-0 is Pending: "
        "no persistent volumes available for this claim and no storage class is set")

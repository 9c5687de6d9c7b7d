"""The deploy role and the day-2 playbooks against the in-memory API server (tests/support/fake_k8s.py), which behaves
as the real kube-apiserver did for what the roles use: a re-run after a scale is changed=0, a bad schedule fails before
anything is applied, and destroy removes everything any role created, in an order that cannot deadlock. Check mode of a
first deploy, deploy, its re-run (changed=0) and destroy of a role-created namespace are run by the documented command
lines themselves (tests/playbooks/test_doc_commands_cluster.py)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.playbooks.conftest import changed_tasks, recap
from tests.support.fake_k8s import FakeKubernetes

NS = "lm"
DOMAIN = "apps.example.com"
LABELS = {"app.kubernetes.io/managed-by": "rhpds.litemaas", "app.kubernetes.io/instance": NS, "app.kubernetes.io/part-of": "litemaas"}


@pytest.fixture()
def cluster(tmp_path):
    fake = FakeKubernetes().start()
    fake.add({"apiVersion": "config.openshift.io/v1", "kind": "Ingress", "metadata": {"name": "cluster"}, "spec": {"domain": DOMAIN}})
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(fake.kubeconfig()))
    yield fake, kubeconfig
    fake.stop()


def _vars(kubeconfig, **extra):
    return dict({"ocp4_workload_litemaas_namespace": NS, "ocp4_workload_litemaas_k8s_kubeconfig": str(kubeconfig),
                 "ocp4_workload_litemaas_proxy_image": "quay.io/example/litemaas-proxy:1.0",
                 "ocp4_workload_litemaas_verify_routes": False, "ocp4_workload_litemaas_agnosticd_user_info": False,
                 "ocp4_workload_litemaas_wait_timeout": 20}, **extra)


def _writes(fake) -> list:
    return [r for r in fake.requests if r["method"] in ("POST", "PUT", "PATCH", "DELETE") and r["query"].get("dryRun") != "All"]


def _pipeline(tmp_path, kubeconfig, deployment):
    play = [{"name": "pipeline", "hosts": "localhost", "gather_facts": False,
             "module_defaults": {"group/kubernetes.core.k8s": {"kubeconfig": str(kubeconfig)}},
             "tasks": [{"name": "Apply", "ansible.builtin.include_role": {"name": "rhpds.litemaas.litemaas_manifests"},
                        "vars": {"litemaas_manifests_files": [{"path": "a/d.yaml", "content": yaml.safe_dump(deployment)}],
                                 "litemaas_manifests_label": "test"}}]}]
    path = tmp_path / f"pipeline-{len(list(tmp_path.iterdir()))}.yml"
    path.write_text(json.dumps(play))
    return path


def test_a_deploy_after_a_scale_to_the_same_count_changes_nothing(playbook, tmp_path, cluster):
    fake, kubeconfig = cluster
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "litellm", "namespace": NS, "labels": LABELS},
                  "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "litellm"}}, "template": {
                      "metadata": {"labels": {"app": "litellm"}}, "spec": {"containers": [{"name": "proxy", "image": "example/proxy:1"}]}}}}
    playbook.run_file(_pipeline(tmp_path, kubeconfig, deployment))
    # litemaas_scale writes through the scale subresource: the Python client's manager owns spec.replicas now.
    playbook.run("scale.yml", {"litemaas_scale": {"proxy": 2}, "litemaas_scale_namespace": NS, "ocp4_workload_litemaas_k8s_kubeconfig": str(kubeconfig),
                               "litemaas_scale_wait_timeout": 20})
    assert fake.managers("deployments", NS, "litellm")["OpenAPI-Generator (Update)"] == [".spec.replicas"]
    version = fake.objects[("deployments", NS, "litellm")]["metadata"]["resourceVersion"]
    # The pipeline with the count the scale set (what the scale play tells to set): nothing to change.
    deployment["spec"]["replicas"] = 2
    same = playbook.run_file(_pipeline(tmp_path, kubeconfig, deployment))
    assert recap(same.stdout)["changed"] == 0, changed_tasks(same.stdout)
    assert fake.objects[("deployments", NS, "litellm")]["metadata"]["resourceVersion"] == version
    # Another count is applied (and the field taken back).
    deployment["spec"]["replicas"] = 4
    other = playbook.run_file(_pipeline(tmp_path, kubeconfig, deployment))
    assert recap(other.stdout)["changed"] == 1
    assert fake.objects[("deployments", NS, "litellm")]["spec"]["replicas"] == 4
    assert ".spec.replicas" in fake.managers("deployments", NS, "litellm")["rhpds.litemaas"]


def _backup_vars(kubeconfig, **extra):
    return dict({"ocp4_workload_litemaas_namespace": NS, "ocp4_workload_litemaas_k8s_kubeconfig": str(kubeconfig),
                 "litemaas_backup_name": "first", "litemaas_backup_wait_timeout": 20}, **extra)


def test_a_schedule_split_by_key_value_fails_before_anything_is_applied(playbook, cluster):
    fake, kubeconfig = cluster
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    bad = playbook.run("backup.yml", _backup_vars(kubeconfig, litemaas_backup_schedule="0"), expect_rc=2)
    assert ('litemaas_backup_schedule must be a cron schedule of 5 fields (minute hour day month weekday), e.g. "0 3 * * *"; got "0".'
            in bad.stdout)
    assert _writes(fake) == []


def test_destroy_in_a_namespace_the_role_did_not_create_removes_what_every_role_made(playbook, cluster):
    fake, kubeconfig = cluster
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    fake.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "theirs", "namespace": NS}})
    fake.add({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "litellm", "namespace": NS, "labels": LABELS},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "litellm"}}, "template": {
                  "metadata": {"labels": {"app": "litellm"}}, "spec": {"containers": [{"name": "proxy", "image": "example/proxy:1"}]}}}})
    # A backup now and a nightly schedule: a PVC, a Job whose (Succeeded) pod mounts it, a CronJob.
    playbook.run("backup.yml", _backup_vars(kubeconfig, litemaas_backup_schedule="0 3 * * *"))
    assert fake.names("cronjobs", NS) == ["litemaas-backup"] and fake.names("jobs", NS) == ["litemaas-backup-first"]
    assert fake.objects[("cronjobs", NS, "litemaas-backup")]["spec"]["schedule"] == "0 3 * * *"
    pvcs = fake.names("persistentvolumeclaims", NS)
    assert pvcs and [p for (r, ns, n), p in fake.objects.items() if r == "pods" and ns == NS and p["status"]["phase"] == "Succeeded"]
    done = playbook.run("destroy.yml", _vars(kubeconfig))
    assert recap(done.stdout)["failed"] == 0
    left = sorted((r, n) for (r, ns, n) in fake.objects if ns == NS and r != "events")
    assert left == [("configmaps", "kube-root-ca.crt"), ("configmaps", "theirs"), ("serviceaccounts", "default")]
    deletes = [r["path"].split("/")[-2] for r in _writes(fake) if r["method"] == "DELETE"]
    assert deletes.index("persistentvolumeclaims") > max(deletes.index("jobs"), deletes.index("cronjobs"), deletes.index("deployments"))

"""The documented command lines that need a cluster, run exactly as written against the in-memory API server
(tests/support/fake_k8s.py), in the order a user runs them: check mode of a first install, deploy, the same deploy
again (changed=0), first admins, upgrade, scale, backups and the nightly schedule, key cleanup, and the removal in the
docs' order. Which commands these are: RUN in tests/playbooks/test_doc_commands.py."""

from __future__ import annotations

import pytest
import yaml

from tests.playbooks.conftest import changed_tasks, recap
from tests.support.doc_commands import CLUSTER_VARS, kube_home, sh
from tests.support.fake_k8s import FakeKubernetes

DOMAIN = "apps.example.com"
NS = "litemaas"


# ---------------------------------------------------------------- against the in-memory API server

@pytest.fixture()
def cluster_home(tmp_path, ansible_env):
    """(server, env): ``$HOME/.kube/config`` names the in-memory API server, which has the cluster's ingress domain."""
    fake = FakeKubernetes().start()
    fake.add({"apiVersion": "config.openshift.io/v1", "kind": "Ingress", "metadata": {"name": "cluster"}, "spec": {"domain": DOMAIN}})
    env = kube_home(tmp_path, fake, ansible_env, dict(CLUSTER_VARS, litemaas_backup_wait_timeout=60))
    yield fake, env
    fake.stop()


def text_of_upgrade() -> str:
    return ("ansible-playbook rhpds.litemaas.upgrade -e ocp4_workload_litemaas_namespace=litemaas -e ocp4_workload_litemaas_version=0.5.0"
            " -e ocp4_workload_litemaas_proxy_image=quay.io/example/litemaas-proxy:0.2.0")


def _writes(fake) -> list:
    return [r for r in fake.requests if r["method"] in ("POST", "PUT", "PATCH", "DELETE") and r["query"].get("dryRun") != "All"]


def test_cluster_commands_deploy_operate_and_destroy(cluster_home, tmp_path):
    fake, env = cluster_home
    deploy = "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas"
    # docs/deployment.md: --check --diff before a first install reports what it would create and writes nothing.
    check = sh(deploy + " --check --diff", env, tmp_path)
    assert "which does not exist yet" in check.stdout and "StatefulSet/litellm-postgres" in check.stdout
    assert recap(check.stdout)["failed"] == 0 and recap(check.stdout)["changed"] > 0
    assert {r["path"] for r in _writes(fake)} <= {"/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"}
    assert fake.names("namespaces", "") == []
    # The deploy: every component, the route hosts under the cluster's domain; the same command again changes nothing.
    first = sh(deploy, env, tmp_path)
    assert recap(first.stdout)["changed"] > 0
    assert fake.names("statefulsets", NS) == ["litellm-postgres"]
    assert {"litellm", "litellm-backend", "litellm-frontend", "litellm-redis"} <= set(fake.names("deployments", NS))
    assert fake.objects[("routes", NS, "litellm")]["spec"]["host"] == f"litellm.{DOMAIN}"
    again = sh(deploy, env, tmp_path)
    assert recap(again.stdout)["changed"] == 0, changed_tasks(again.stdout)
    # docs/deployment.md: the first admins, given as JSON.
    sh(deploy + """ -e '{"ocp4_workload_litemaas_initial_admin_users": ["alice"]}'""", env, tmp_path)
    backend = fake.objects[("deployments", NS, "litellm-backend")]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "INITIAL_ADMIN_USERS", "value": "alice"} in backend, backend
    # docs/day2.md, playbooks/upgrade.yml: a backup first, then the new images rolled out.
    images = {n: d["spec"]["template"]["spec"]["containers"][0]["image"] for (r, ns, n), d in fake.objects.items() if r == "deployments"}
    sh(text_of_upgrade(), env, tmp_path)
    assert [j for j in fake.names("jobs", NS) if j.startswith("litemaas-backup-pre-upgrade-")], fake.names("jobs", NS)
    after = {n: d["spec"]["template"]["spec"]["containers"][0]["image"] for (r, ns, n), d in fake.objects.items() if r == "deployments"}
    assert after["litellm"] == "quay.io/example/litemaas-proxy:0.2.0", after
    assert after["litellm-backend"].endswith(":0.5.0") and after["litellm-frontend"].endswith(":0.5.0"), after
    assert after["litellm-redis"] == images["litellm-redis"]
    # docs/day2.md, playbooks/scale.yml: five proxies, three frontends.
    sh("""ansible-playbook rhpds.litemaas.scale -e '{"litemaas_scale": {"proxy": 5, "frontend": 3}}'""", env, tmp_path)
    assert fake.objects[("deployments", NS, "litellm")]["spec"]["replicas"] == 5
    assert fake.objects[("deployments", NS, "litellm-frontend")]["spec"]["replicas"] == 3
    # docs/day2.md, docs/migration.md, playbooks/backup.yml: a backup now (both spellings), then the nightly schedule.
    sh("ansible-playbook rhpds.litemaas.backup", env, tmp_path)
    sh("ansible-playbook rhpds.litemaas.backup -e ocp4_workload_litemaas_namespace=litemaas", env, tmp_path)
    assert len([j for j in fake.names("jobs", NS) if j.startswith("litemaas-backup-") and "pre-upgrade" not in j]) == 2, fake.names("jobs", NS)
    sh("""ansible-playbook rhpds.litemaas.backup -e '{"litemaas_backup_schedule": "0 3 * * *"}'""", env, tmp_path)
    assert fake.objects[("cronjobs", NS, "litemaas-backup")]["spec"]["schedule"] == "0 3 * * *"
    sh("""ansible-playbook rhpds.litemaas.backup -e '{"litemaas_backup_schedule": "0 3 * * *"}' -e litemaas_backup_keep=14""", env, tmp_path)
    cron = fake.objects[("cronjobs", NS, "litemaas-backup")]
    assert cron["spec"]["schedule"] == "0 3 * * *"
    assert "14" in yaml.safe_dump(cron["spec"]["jobTemplate"]), cron["spec"]["jobTemplate"]
    # docs/day2.md, playbooks/key_cleanup.yml: the nightly key cleanup, and the same again (changed=0).
    sh("ansible-playbook rhpds.litemaas.key_cleanup", env, tmp_path)
    assert fake.objects[("cronjobs", NS, "litemaas-key-cleanup")]["spec"]["schedule"] == "0 2 * * *"
    again = sh("ansible-playbook rhpds.litemaas.key_cleanup -e ocp4_workload_litemaas_namespace=litemaas", env, tmp_path)
    assert recap(again.stdout)["changed"] == 0, changed_tasks(again.stdout)
    # docs/deployment.md's removal, in its order: monitoring, key cleanup, then everything with the role's namespace.
    sh("ansible-playbook rhpds.litemaas.monitoring -e ocp4_workload_litemaas_monitoring_action=destroy", env, tmp_path)
    sh("ansible-playbook rhpds.litemaas.key_cleanup -e litemaas_key_cleanup_state=absent", env, tmp_path)
    assert "litemaas-key-cleanup" not in fake.names("cronjobs", NS)
    sh("ansible-playbook rhpds.litemaas.destroy -e ocp4_workload_litemaas_namespace=litemaas", env, tmp_path)
    assert fake.names("namespaces", "") == [] and not [k for k in fake.objects if k[1] == NS]

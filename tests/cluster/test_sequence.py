"""The deploy -> re-run -> scale -> upgrade -> monitoring -> backup/restore/key cleanup -> destroy sequence on a real
cluster, with the checks the in-memory API server runs in the default suite: every re-run is changed=0 and destroy
leaves nothing labelled. Opt-in (skipped without KUBECONFIG); the tests run in file order and depend on each other."""

from __future__ import annotations

import os

import pytest

from tests.cluster.conftest import cluster_vars
from tests.playbooks.conftest import recap

NS = os.environ.get("LITEMAAS_CLUSTER_NAMESPACE", "litemaas-check")
BASE = dict(cluster_vars(), ocp4_workload_litemaas_namespace=NS)


def _run(cluster_playbook, playbook, **extra):
    return cluster_playbook.run(playbook, dict(BASE, **extra), timeout=3600)


def _api():
    from kubernetes import client, config

    return client.ApiClient(config.load_kube_config(os.environ["KUBECONFIG"].split(os.pathsep)[0]) or None)


def _labelled() -> list:
    """Every object of the collection's label left in the namespace (pods and PVCs included)."""
    from kubernetes import client

    core = client.CoreV1Api(_api())
    selector = "app.kubernetes.io/managed-by=rhpds.litemaas"
    found = []
    for lister in (core.list_namespaced_pod, core.list_namespaced_persistent_volume_claim, core.list_namespaced_secret,
                   core.list_namespaced_config_map, core.list_namespaced_service):
        found += [item.metadata.name for item in lister(NS, label_selector=selector).items]
    return found


def test_deploy(cluster_playbook):
    assert recap(_run(cluster_playbook, "deploy.yml").stdout)["failed"] == 0


def test_rerun_changes_nothing(cluster_playbook):
    assert recap(_run(cluster_playbook, "deploy.yml").stdout)["changed"] == 0


def test_scale_then_deploy_with_that_count_changes_nothing(cluster_playbook):
    _run(cluster_playbook, "scale.yml", litemaas_scale={"proxy": 2})
    assert recap(_run(cluster_playbook, "deploy.yml", ocp4_workload_litemaas_ha_litellm_replicas=2).stdout)["changed"] == 0


def test_upgrade(cluster_playbook):
    assert recap(_run(cluster_playbook, "upgrade.yml", ocp4_workload_litemaas_ha_litellm_replicas=2).stdout)["failed"] == 0


def test_monitoring_twice(cluster_playbook):
    _run(cluster_playbook, "monitoring.yml", ocp4_workload_litemaas_monitoring_namespace=NS)
    assert recap(_run(cluster_playbook, "monitoring.yml", ocp4_workload_litemaas_monitoring_namespace=NS).stdout)["changed"] == 0


def test_backup_restore_and_key_cleanup(cluster_playbook):
    _run(cluster_playbook, "backup.yml", litemaas_backup_name="check", litemaas_backup_schedule="0 3 * * *")
    _run(cluster_playbook, "restore.yml", litemaas_restore_backup="check", litemaas_restore_confirm=True)
    _run(cluster_playbook, "key_cleanup.yml")


def test_destroy_leaves_nothing(cluster_playbook):
    _run(cluster_playbook, "monitoring.yml", ocp4_workload_litemaas_monitoring_namespace=NS, ocp4_workload_litemaas_monitoring_action="destroy")
    _run(cluster_playbook, "destroy.yml")
    assert _labelled() == []


@pytest.fixture(scope="module", autouse=True)
def _cluster_reachable():
    from kubernetes import client

    client.VersionApi(_api()).get_code()  # fails here, with the client's error, when the cluster does not answer

"""The upgrade playbook in render mode: backup first, new image tags, and the failure path with restore instructions."""

from __future__ import annotations

import re

from tests.playbooks.conftest import load_dir
from tests.support import k8s_schemas


def _images(docs, path):
    pod = docs[path][0]["spec"]["template"]["spec"]
    return [c["image"] for c in pod.get("initContainers", []) + pod["containers"]]


def test_upgrade_renders_backup_then_new_images(playbook, render_dir):
    proc = playbook.run("upgrade.yml", {"ocp4_workload_litemaas_render_dir": str(render_dir), "ocp4_workload_litemaas_version": "0.5.0",
                                        "ocp4_workload_litemaas_proxy_image": "quay.io/example/litemaas-proxy:0.2.0"})
    docs = load_dir(render_dir)
    backups = [p for p in docs if p.startswith("day2/backup/")]
    assert sorted(backups) == ["day2/backup/job.yaml", "day2/backup/pvc.yaml"]
    job = docs["day2/backup/job.yaml"][0]
    assert re.fullmatch(r"litemaas-backup-pre-upgrade-\d{8}-\d{6}", job["metadata"]["name"])
    # The backup runs before the deploy role.
    assert proc.stdout.index("TASK [rhpds.litemaas.litemaas_backup : Report the backup]") < proc.stdout.index("TASK [rhpds.litemaas.ocp4_workload_litemaas")
    assert "quay.io/rh-aiservices-bu/litemaas-backend:0.5.0" in _images(docs, "07-backend/deployment.yaml")
    assert "quay.io/rh-aiservices-bu/litemaas-frontend:0.5.0" in _images(docs, "09-frontend/deployment.yaml")
    assert _images(docs, "04-proxy/deployment.yaml") == ["quay.io/example/litemaas-proxy:0.2.0"]
    assert f"Rendered the upgraded manifests to {render_dir}" in proc.stdout
    k8s_schemas.assert_valid(render_dir, minimum=25)


def test_failed_upgrade_stops_with_restore_instructions(playbook, render_dir):
    # The deploy role refuses two portal backends while OAuth login is on: the upgrade fails after the backup.
    proc = playbook.run("upgrade.yml", {"ocp4_workload_litemaas_render_dir": str(render_dir), "ocp4_workload_litemaas_version": "0.5.0",
                                        "ocp4_workload_litemaas_ha_backend_replicas": 2}, expect_rc=2)
    assert "The upgrade failed at" in proc.stdout
    name = re.search(r"litemaas_restore_backup=(pre-upgrade-\d{8}-\d{6})", proc.stdout)
    assert name, proc.stdout[-3000:]
    assert (render_dir / "day2/backup/job.yaml").read_text().count(name.group(1)) >= 1
    assert "ansible-playbook rhpds.litemaas.restore -e ocp4_workload_litemaas_namespace=litemaas" in proc.stdout
    assert "litemaas_restore_confirm=true" in proc.stdout

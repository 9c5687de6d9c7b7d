"""Opt-in: the cluster sequence against the cluster KUBECONFIG names (docs/deployment.md, "Checking a real cluster")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.playbooks.conftest import PlaybookRunner


def pytest_collection_modifyitems(config, items):
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if kubeconfig and Path(kubeconfig.split(os.pathsep)[0]).is_file():
        return
    reason = ("no cluster given: set KUBECONFIG to a kubeconfig file of the OpenShift cluster to check "
              "(LITEMAAS_CLUSTER_NAMESPACE: the namespace to use, default litemaas-check; LITEMAAS_CLUSTER_VARS: a YAML "
              "file of variables every playbook gets)")
    for item in items:
        if "tests/cluster/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def cluster_playbook(ansible_env, tmp_path_factory):
    env = dict(ansible_env, K8S_AUTH_KUBECONFIG=os.environ.get("KUBECONFIG", "").split(os.pathsep)[0])
    return PlaybookRunner(env, tmp_path_factory.mktemp("cluster"))


def cluster_vars() -> dict:
    """The variables of the YAML file LITEMAAS_CLUSTER_VARS names (what this cluster needs, e.g. a proxy image its
    nodes can pull, or ocp4_workload_litemaas_verify_routes: false where the control node cannot resolve route
    hosts), given to every playbook of the sequence; none without it."""
    path = os.environ.get("LITEMAAS_CLUSTER_VARS", "")
    if not path:
        return {}
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise pytest.UsageError(f"LITEMAAS_CLUSTER_VARS={path}: cannot read a YAML file: {exc}") from exc
    if not isinstance(loaded, dict):
        raise pytest.UsageError(f"LITEMAAS_CLUSTER_VARS={path}: must hold a mapping of variable names to values, not {type(loaded).__name__}")
    return loaded

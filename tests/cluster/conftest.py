"""Opt-in: the cluster sequence against the cluster KUBECONFIG names (docs/deployment.md, "Checking a real cluster")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.playbooks.conftest import PlaybookRunner


def pytest_collection_modifyitems(config, items):
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if kubeconfig and Path(kubeconfig.split(os.pathsep)[0]).is_file():
        return
    reason = ("no cluster given: set KUBECONFIG to a kubeconfig file of the OpenShift cluster to check "
              "(LITEMAAS_CLUSTER_NAMESPACE: the namespace to use, default litemaas-check)")
    for item in items:
        if "tests/cluster/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def cluster_playbook(ansible_env, tmp_path_factory):
    env = dict(ansible_env, K8S_AUTH_KUBECONFIG=os.environ.get("KUBECONFIG", "").split(os.pathsep)[0])
    return PlaybookRunner(env, tmp_path_factory.mktemp("cluster"))

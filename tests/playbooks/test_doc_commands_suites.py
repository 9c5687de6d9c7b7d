"""The documented command lines that are test runs themselves.

``KUBECONFIG=$HOME/.kube/config bash scripts/test.sh tests/cluster`` (docs/deployment.md) runs here exactly as written,
from this checkout, with ``$HOME/.kube/config`` naming the in-memory API server (tests/support/fake_k8s.py) and
``LITEMAAS_CLUSTER_VARS`` naming what that server lacks, as a user would for a cluster that lacks it: so the opt-in
suite of tests/cluster runs its whole sequence here too, and what it checks is checked. The other test runs the docs
write are lines of the test command itself (scripts/test.sh, .ci/run); ``test_the_test_command_runs_the_documented_test_lines``
keeps them the docs' lines.
"""

from __future__ import annotations

import re

import yaml

from tests.playbooks.conftest import REPO
from tests.support.doc_commands import CLUSTER_VARS, kube_home, sh
from tests.support.fake_k8s import FakeKubernetes

NS = "litemaas-check"
SEQUENCE = len(re.findall(r"^def test_", (REPO / "tests" / "cluster" / "test_sequence.py").read_text(), re.M))


def test_cluster_suite_line_runs_the_whole_sequence_against_the_cluster_named(tmp_path, ansible_env):
    fake = FakeKubernetes().start()
    try:
        fake.add({"apiVersion": "config.openshift.io/v1", "kind": "Ingress", "metadata": {"name": "cluster"}, "spec": {"domain": "apps.example.com"}})
        env = kube_home(tmp_path, fake, ansible_env, {})
        # A test run inside a test run: the outer run's pytest and ansible-core settings must not leak into the inner one.
        env = {k: v for k, v in env.items() if not k.startswith(("PYTEST_", "LITEMAAS_ANSIBLE_CORE_VENV"))}
        cluster_vars = tmp_path / "cluster-vars.yml"
        cluster_vars.write_text(yaml.safe_dump(dict(CLUSTER_VARS, litemaas_backup_wait_timeout=60)))
        env["LITEMAAS_CLUSTER_VARS"] = str(cluster_vars)
        out = sh("KUBECONFIG=$HOME/.kube/config bash scripts/test.sh tests/cluster", env, REPO, timeout=1500).stdout
        # Every test of the sequence ran and passed; none was skipped (a skip would mean no cluster was found).
        assert SEQUENCE > 5 and re.search(rf"\b{SEQUENCE} passed\b", out) and "skipped" not in out, out[-4000:]
        # ... against this server: the platform was applied into the suite's namespace (a backup schedule and a
        # restore Job too), and destroy removed that namespace, which the deploy had created, with all in it.
        written = {(r["method"], r["path"].split("/")[-2]) for r in fake.requests if f"/namespaces/{NS}/" in r["path"]}
        assert {("PATCH", "statefulsets"), ("PATCH", "deployments"), ("PATCH", "cronjobs"), ("PATCH", "jobs")} <= written, sorted(written)
        assert any(r["method"] == "DELETE" and r["path"] == f"/api/v1/namespaces/{NS}" for r in fake.requests)
        left = [key for key in fake.objects if key[1] == NS or key == ("namespaces", "", NS)]
        assert left == [], left
    finally:
        fake.stop()


def _lines(path) -> list:
    return [line.strip() for line in (REPO / path).read_text().splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_test_command_runs_the_documented_test_lines():
    """.ci/run runs ``bash scripts/test.sh``; its whole run runs tests/reliability and tests/integration/local with the
    docs' lines, after the main pytest run, which leaves them out so that they do not run twice."""
    assert "bash scripts/test.sh" in _lines(".ci/run")
    lines = _lines("scripts/test.sh")
    whole = lines[lines.index('log "ruff"'):]  # what runs without arguments
    # (schemathesis fuzzing in one process: under xdist its generated cases do not run, and its last test says so)
    assert ".venv/bin/python -m pytest -q -n 2 --dist loadfile tests/reliability --ignore=tests/reliability/test_schemathesis.py" in whole
    assert ".venv/bin/python -m pytest -q tests/reliability/test_schemathesis.py" in whole
    assert "bash scripts/test.sh tests/integration/local" in whole
    main = [line for line in whole if line.startswith("python -m pytest -n 2") and "-m ansible_core" not in line]
    assert len(main) == 1 and "--ignore=tests/reliability " in main[0] + " " and "--ignore=tests/integration/local" in main[0], main

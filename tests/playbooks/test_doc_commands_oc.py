"""The documented ``oc`` command lines and the shell variables the docs set with them, run exactly as written against
the in-memory API server (tests/support/fake_k8s.py) after one deploy of the platform into it.

``oc`` here is Debian's kubectl (package kubernetes-client, unpacked under .work by scripts/lib.sh
``ensure_kubectl_standin``) under the name ``oc``: the documented lines use only kubectl's verbs (get, describe, logs,
annotate, create, rollout). It reads ``$HOME/.kube/config``, as ``oc`` does after ``oc login``. A doc block that sets
variables (``NS=...``, ``API=$(oc get route ...)``) runs as one shell, as a reader pastes it, and the test reads the
variables it left. Which lines these are: RUN in tests/playbooks/test_doc_commands.py."""

from __future__ import annotations

import base64
import subprocess

import pytest
import yaml

from tests.playbooks.conftest import recap
from tests.support.doc_commands import CLUSTER_VARS, kube_home, sh, text_of
from tests.support.fake_k8s import FakeKubernetes

DOMAIN = "apps.example.com"
NS = "litemaas"
DEPLOY = "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, ansible_env):
    """(server, env, cwd): the platform deployed into the in-memory API server, ``oc`` on PATH, $HOME/.kube/config."""
    root = tmp_path_factory.mktemp("oc")
    fake = FakeKubernetes().start()
    fake.add({"apiVersion": "config.openshift.io/v1", "kind": "Ingress", "metadata": {"name": "cluster"}, "spec": {"domain": DOMAIN}})
    env = kube_home(root, fake, ansible_env, CLUSTER_VARS, oc=True)
    env.pop("NS", None)
    cwd = root / "cwd"
    cwd.mkdir()
    try:
        deploy = sh(DEPLOY, env, cwd)
        assert recap(deploy.stdout)["failed"] == 0
        yield fake, env, cwd
    finally:
        fake.stop()


def session(keys: list, env: dict, cwd, show: tuple = ()) -> tuple:
    """(stdout, stderr, {variable: value}): the doc lines ``keys`` pasted one after another into one bash, then the
    values of the variables ``show``."""
    script = "\n".join(text_of(k) for k in keys) + "\n" + "".join(f'printf "\\n@@{v}=%s" "${v}"\n' for v in show)
    proc = subprocess.run(["bash", "-c", script], env=env, cwd=str(cwd), capture_output=True, text=True, timeout=120, check=False)
    out, dummy, tail = proc.stdout.partition("\n@@")
    values = dict(line.split("=", 1) for line in ("\n@@" + tail).split("\n@@")[1:]) if show else {}
    return (out if show else proc.stdout), proc.stderr, values


def secret_value(fake, name: str, key: str) -> str:
    return base64.b64decode(fake.objects[("secrets", NS, name)]["data"][key]).decode()


def route_host(fake, name: str, namespace: str = NS) -> str:
    return fake.objects[("routes", namespace, name)]["spec"]["host"]


# ---------------------------------------------------------------- the variables the docs set

def test_variables_of_troubleshooting_are_the_clusters_values(cluster):
    fake, env, cwd = cluster
    keys = ["NS=litemaas",
            "API=https://$(oc get route litellm -n $NS -o jsonpath='{.spec.host}')",
            "ADMIN=https://$(oc get route litellm-admin -n $NS -o jsonpath='{.spec.host}')",
            "MASTER=$(oc get secret litellm-secret -n $NS -o jsonpath='{.data.LITELLM_MASTER_KEY}' | base64 -d)",
            "ADMIN_KEY=$(oc get secret backend-secret -n $NS -o jsonpath='{.data.ADMIN_API_KEYS}' | base64 -d | cut -d, -f1)",
            "REDIS_PASSWORD=$(oc get secret litellm-redis -n $NS -o jsonpath='{.data.REDIS_PASSWORD}' | base64 -d)"]
    dummy, err, values = session(keys, env, cwd, ("NS", "API", "ADMIN", "MASTER", "ADMIN_KEY", "REDIS_PASSWORD"))
    assert not err, err
    assert values["NS"] == NS
    assert values["API"] == f"https://{route_host(fake, 'litellm')}" == f"https://litellm.{DOMAIN}", values
    assert values["ADMIN"] == f"https://{route_host(fake, 'litellm-admin')}", values
    assert values["MASTER"] == secret_value(fake, "litellm-secret", "LITELLM_MASTER_KEY") and values["MASTER"].startswith("sk-")
    assert values["ADMIN_KEY"] == secret_value(fake, "backend-secret", "ADMIN_API_KEYS").split(",")[0] and values["ADMIN_KEY"]
    assert values["REDIS_PASSWORD"] == secret_value(fake, "litellm-redis", "REDIS_PASSWORD") and values["REDIS_PASSWORD"]


def test_deployment_check_lists_every_workload_ready(cluster):
    # docs/deployment.md "Check": the same variables, then "every READY column full".
    fake, env, cwd = cluster
    out, err, dummy = session(["NS=litemaas", "oc get deploy,statefulset -n $NS"], env, cwd)
    assert not err, err
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if not line.startswith("NAME") and line.strip()}
    wanted = {f"deployment.apps/{n}" for n in fake.names("deployments", NS)} | {f"statefulset.apps/{n}" for n in fake.names("statefulsets", NS)}
    assert set(rows) == wanted and "statefulset.apps/litellm-postgres" in rows, out
    for name, ready in rows.items():
        have, want = ready.split("/")
        assert have == want != "0", (name, ready)


# ---------------------------------------------------------------- docs/troubleshooting.md

def _ns_env(cluster):
    fake, env, cwd = cluster
    return fake, dict(env, NS=NS), cwd


def test_image_and_oauth_checks_print_what_is_deployed(cluster):
    fake, env, cwd = _ns_env(cluster)
    deployments = {n: fake.objects[("deployments", NS, n)]["spec"]["template"]["spec"] for n in ("litellm-frontend", "litellm-backend")}
    images = sh("oc get deploy litellm-frontend litellm-backend -n $NS -o jsonpath='{range .items[*]}{.metadata.name}{\": \"}"
                "{.spec.template.spec.initContainers[*].image}{\" \"}{.spec.template.spec.containers[*].image}{\"\\n\"}{end}'", env, cwd).stdout
    lines = images.splitlines()
    assert [line.split(": ")[0] for line in lines] == ["litellm-frontend", "litellm-backend"], images
    for line in lines:
        name, dummy, shown = line.partition(": ")
        spec = deployments[name]
        assert shown.split() == [c["image"] for c in spec.get("initContainers") or []] + [c["image"] for c in spec["containers"]], line
    status = sh("oc rollout status deploy/litellm-frontend -n $NS", env, cwd).stdout
    assert status.strip() == 'deployment "litellm-frontend" successfully rolled out', status
    # oauthclient mode (the deploy's default when OAuthClients may be created): the client's redirect URIs.
    uris = sh("oc get oauthclient $NS -o jsonpath='{.redirectURIs}'; echo", env, cwd).stdout
    assert yaml.safe_load(uris) == fake.objects[("oauthclients", "", NS)]["redirectURIs"], uris
    assert f"https://{route_host(fake, 'litellm-frontend')}/api/auth/callback" in yaml.safe_load(uris)
    callback = sh("oc get deploy litellm-backend -n $NS -o jsonpath='{.spec.template.spec.containers[0].env}' | tr ',' '\\n' | grep -A1 OAUTH_CALLBACK_URL",
                  env, cwd).stdout.splitlines()
    value = next(e["value"] for e in deployments["litellm-backend"]["containers"][0]["env"] if e["name"] == "OAUTH_CALLBACK_URL")
    assert callback == ['{"name":"OAUTH_CALLBACK_URL"', f'"value":"{value}"}}'], callback


def test_route_timeout_is_shown_and_annotated(cluster):
    fake, env, cwd = _ns_env(cluster)
    columns = "oc get route -n $NS -o custom-columns=NAME:.metadata.name,TIMEOUT:.metadata.annotations.haproxy\\\\.router\\\\.openshift\\\\.io/timeout"
    before = {line.split()[0]: line.split()[1] for line in sh(columns, env, cwd).stdout.splitlines()[1:]}
    routes = {n: fake.objects[("routes", NS, n)]["metadata"]["annotations"]["haproxy.router.openshift.io/timeout"] for n in fake.names("routes", NS)}
    assert before == routes and routes["litellm"] != "900s", before
    out = sh("oc annotate route litellm -n $NS haproxy.router.openshift.io/timeout=900s --overwrite", env, cwd).stdout
    assert "route.route.openshift.io/litellm annotated" in out, out
    assert fake.objects[("routes", NS, "litellm")]["metadata"]["annotations"]["haproxy.router.openshift.io/timeout"] == "900s"
    after = {line.split()[0]: line.split()[1] for line in sh(columns, env, cwd).stdout.splitlines()[1:]}
    assert after == dict(before, litellm="900s"), after


def test_pod_restarts_volumes_jobs_and_policies_are_listed(cluster):
    fake, env, cwd = _ns_env(cluster)
    pods = sh("oc get pods -n $NS -o custom-columns=NAME:.metadata.name,RESTARTS:.status.containerStatuses[0].restartCount,"
              "LAST:.status.containerStatuses[0].lastState.terminated.reason", env, cwd).stdout.splitlines()
    assert pods[0].split() == ["NAME", "RESTARTS", "LAST"]
    assert sorted(line.split()[0] for line in pods[1:]) == fake.names("pods", NS)
    assert {tuple(line.split()[1:]) for line in pods[1:]} == {("0", "<none>")}, pods  # no restart, no previous container
    # 14. PostgreSQL: the StatefulSet, the kubelet's log of its pod (the test's own text, 60 lines), its volume.
    fake.logs[(NS, "litellm-postgres-0", "postgres", False)] = "".join(f"log line {i}\n" for i in range(60))
    out = sh("oc get sts litellm-postgres -n $NS; oc logs -n $NS litellm-postgres-0 --tail=50", env, cwd).stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "AGE"] and out[1].split()[:2] == ["litellm-postgres", "1/1"], out
    assert out[2:] == [f"log line {i}" for i in range(10, 60)], out
    out = sh("oc get pvc -n $NS; oc describe pvc data-litellm-postgres-0 -n $NS | tail", env, cwd).stdout
    # (the in-memory server gives PVCs no Table: kubectl prints NAME and AGE where a real server adds STATUS, CAPACITY, ...)
    assert [line.split()[0] for line in out.splitlines()[1:3]] == fake.names("persistentvolumeclaims", NS), out
    assert "Used By:" in out and "litellm-postgres-0" in out.split("Used By:")[1], out
    # 15. the jobs (none yet after a deploy) and the network policies the deploy installed.
    out = sh("oc get networkpolicy -n $NS", env, cwd).stdout.splitlines()
    assert sorted(line.split()[0] for line in out[1:]) == fake.names("networkpolicies", NS) != [], out


def test_proxy_logs_and_restart(cluster):
    fake, env, cwd = _ns_env(cluster)
    pod = next(n for n in fake.names("pods", NS)
               if [r["name"] for r in fake.objects[("pods", NS, n)]["metadata"]["ownerReferences"]] == ["litellm"])
    container = fake.objects[("pods", NS, pod)]["spec"]["containers"][0]["name"]
    # What the kubelet holds for the proxy's container: the test's own text, a crashed run before this one.
    fake.logs[(NS, pod, container, False)] = "starting\ndatabase schema up to date\nMigrations: none pending\nready\n"
    fake.logs[(NS, pod, container, True)] = "".join(f"previous {i}\n" for i in range(80))
    out = sh("oc logs -n $NS deploy/litellm | grep -i -E 'migrat|schema|database'", env, cwd).stdout
    assert out.splitlines() == ["database schema up to date", "Migrations: none pending"], out
    out = sh("oc logs -n $NS deploy/litellm --previous | tail -50", env, cwd).stdout
    assert out.splitlines() == [f"previous {i}" for i in range(30, 80)], out
    # The backend's log, filtered for OAuth (nothing registered: the container wrote nothing, grep finds nothing).
    out = sh("oc logs -n $NS deploy/litellm-backend | grep -i oauth | tail", env, cwd).stdout
    assert out == ""
    # 9. the restart after a Redis flush: a new pod template (restartedAt), rolled out.
    template = fake.objects[("deployments", NS, "litellm")]["spec"]["template"]
    out = sh("oc rollout restart deploy/litellm -n $NS && oc rollout status deploy/litellm -n $NS", env, cwd).stdout
    assert out.splitlines() == ["deployment.apps/litellm restarted", 'deployment "litellm" successfully rolled out'], out
    restarted = fake.objects[("deployments", NS, "litellm")]["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in restarted["metadata"]["annotations"]
    assert dict(restarted, metadata=template["metadata"]) == template
    assert pod not in fake.names("pods", NS)


# ---------------------------------------------------------------- docs/monitoring.md

def test_user_workload_monitoring_is_switched_on(cluster):
    fake, env, cwd = cluster
    # What every OpenShift cluster has: the monitoring namespaces (no configmap yet: user workload monitoring is off).
    for name in ("openshift-monitoring", "openshift-user-workload-monitoring"):
        fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    look = "oc -n openshift-monitoring get configmap cluster-monitoring-config -o jsonpath='{.data.config\\.yaml}'"
    first = sh(look, env, cwd, rc=1)
    assert 'configmaps "cluster-monitoring-config" not found' in first.stderr, first.stderr
    out = sh("oc -n openshift-monitoring create configmap cluster-monitoring-config --from-literal=config.yaml='enableUserWorkload: true'", env, cwd).stdout
    assert out.strip() == "configmap/cluster-monitoring-config created", out
    assert fake.objects[("configmaps", "openshift-monitoring", "cluster-monitoring-config")]["data"] == {"config.yaml": "enableUserWorkload: true"}
    assert sh(look, env, cwd).stdout == "enableUserWorkload: true"
    # What the cluster monitoring operator then starts (its StatefulSet, written here as the operator would).
    uwm = "openshift-user-workload-monitoring"
    fake.add({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "prometheus-user-workload", "namespace": uwm},
              "spec": {"replicas": 2, "serviceName": "prometheus-operated", "selector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                       "template": {"metadata": {"labels": {"app.kubernetes.io/name": "prometheus"}},
                                    "spec": {"containers": [{"name": "prometheus", "image": "quay.io/prometheus/prometheus:v2.55.1"}]}}}})
    out = sh("oc -n openshift-user-workload-monitoring get pods", env, cwd).stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], out
    assert [line.split()[:4] for line in out[1:]] == [[f"prometheus-user-workload-{i}", "1/1", "Running", "0"] for i in range(2)], out

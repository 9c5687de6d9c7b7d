"""The documented monitoring command lines (the monitoring playbook, the Grafana route and password), the model
servers' predictor checks, the serviceaccount OAuth check and a failed Job's log, run exactly as written against the
in-memory API server (tests/support/fake_k8s.py) named by ``$HOME/.kube/config``, on one platform deployed in
serviceaccount OAuth mode and shared by the tests of this module.

``oc`` is Debian's kubectl under that name (as in tests/playbooks/test_doc_commands_oc.py). The model servers are
what a model-serving team runs in ``llm-hosting`` and ``ovms`` (vLLM and OpenVINO ServingRuntimes, InferenceServices),
with the fake's KServe controller making their predictor Deployments and Services as KServe does in raw deployment
mode, on a node with two GPUs; the namespaces the docs assume (``llm-hosting``, ``ovms``, ``nvidia-gpu-operator``)
are created here as a cluster admin or an operator would. Which lines these are: RUN in
tests/playbooks/test_doc_commands.py."""

from __future__ import annotations

import base64
import json
import re
import subprocess

import pytest

from tests.playbooks.conftest import recap
from tests.support.doc_commands import CLUSTER_VARS, kube_home, sh
from tests.support.fake_k8s import FakeKubernetes, labels_match
from tests.support.kserve_objects import serving_runtime, vllm_runtime

DOMAIN = "apps.example.com"
NS = "litemaas"
DEPLOY = "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas"
# docs/day2.md: every vLLM predictor of llm-hosting and the GPUs.
MONITORING_DAY2 = ("""ansible-playbook rhpds.litemaas.monitoring -e '{"ocp4_workload_litemaas_monitoring_model_servers": [{"runtime": "vllm", """
                   """"namespace": "llm-hosting"}]}' -e ocp4_workload_litemaas_monitoring_gpu_enabled=true""")
# docs/monitoring.md: two named vLLM models, every OpenVINO predictor of ovms, the GPUs.
MONITORING_DOC = ("""ansible-playbook rhpds.litemaas.monitoring -e ocp4_workload_litemaas_namespace=litemaas """
                  """-e '{"ocp4_workload_litemaas_monitoring_model_servers": """
                  """[ {"runtime": "vllm", "namespace": "llm-hosting", "inference_services": ["granite-3-8b", "llama-3-1-8b"]}, """
                  """{"runtime": "openvino", "namespace": "ovms"}]}' -e ocp4_workload_litemaas_monitoring_gpu_enabled=true""")
# playbooks/monitoring.yml's header: every vLLM predictor of llm-hosting.
MONITORING_PLAYBOOK = ("""ansible-playbook rhpds.litemaas.monitoring -e ocp4_workload_litemaas_namespace=litemaas -e """
                       """'{"ocp4_workload_litemaas_monitoring_model_servers": [{"runtime": "vllm", "namespace": "llm-hosting"}]}'""")
GRAFANA_HOST = """echo "https://$(oc -n litemaas get route litemaas-grafana -o jsonpath='{.spec.host}')\""""
GRAFANA_PASSWORD = "oc -n litemaas get secret litemaas-grafana-admin -o jsonpath='{.data.GF_SECURITY_ADMIN_PASSWORD}' | base64 -d; echo"
# llm-hosting: three vLLM models of one GPU each on a node with two (the third stays Pending); one OpenVINO model in ovms.
VLLM_MODELS = ("granite-3-8b", "llama-3-1-8b", "mistral-7b")
GPUS = 2
ALERTS = ["LiteMaaSProxyDown", "LiteMaaSProxyHighErrorRate", "LiteMaaSProxyHighLatencyP99", "LiteMaaSUpstreamErrors",
          "LiteMaaSModelDeploymentCoolingDown", "LiteMaaSRateLimitRejectionSpike", "LiteMaaSProxySpendBacklog",
          "LiteMaaSDatabaseDown", "LiteMaaSRedisDown"]  # docs/monitoring.md's table


def _model(name: str, namespace: str, fmt: str, runtime: str, gpus: int) -> dict:
    """An InferenceService as the model serving role writes one (raw deployment mode)."""
    model = {"modelFormat": {"name": fmt}, "runtime": runtime, "storageUri": f"oci://quay.io/example/{name}:1"}
    if gpus:
        model["resources"] = {"requests": {"nvidia.com/gpu": str(gpus)}, "limits": {"nvidia.com/gpu": str(gpus)}}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace, "labels": {"opendatahub.io/dashboard": "true"},
                         "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}},
            "spec": {"predictor": {"minReplicas": 1, "maxReplicas": 1, "model": model}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, ansible_env):
    """(server, env, cwd): LiteMaaS deployed in serviceaccount OAuth mode, the model servers running under KServe,
    ``oc`` on PATH and ``$HOME/.kube/config`` naming the server; ``NS=litemaas`` as docs/troubleshooting.md sets it."""
    root = tmp_path_factory.mktemp("monitoring")
    fake = FakeKubernetes().start()
    fake.kserve, fake.gpus = True, GPUS
    fake.add({"apiVersion": "config.openshift.io/v1", "kind": "Ingress", "metadata": {"name": "cluster"}, "spec": {"domain": DOMAIN}})
    for name in ("llm-hosting", "ovms", "nvidia-gpu-operator"):
        fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    fake.add(vllm_runtime("llm-hosting"))
    for name in VLLM_MODELS:
        fake.add(_model(name, "llm-hosting", "vLLM", "vllm-runtime", 1))
    ovms = serving_runtime("kserve-ovms", "ovms", "openvino_ir", "quay.io/modh/openvino_model_server:2025.4",
                           ["--model_name={{.Name}}", "--port=8001", "--rest_port=8888", "--model_path=/mnt/models", "--metrics_enable"])
    ovms["spec"]["containers"][0]["ports"] = [{"containerPort": 8888, "protocol": "TCP"}]
    fake.add(ovms)
    fake.add(_model("bge-small", "ovms", "openvino_ir", "kserve-ovms", 0))
    env = kube_home(root, fake, ansible_env, dict(CLUSTER_VARS, ocp4_workload_litemaas_oauth_client_mode="serviceaccount",
                                                  ocp4_workload_litemaas_monitoring_wait_timeout=60, litemaas_backup_wait_timeout=60), oc=True)
    env["NS"] = NS
    cwd = root / "cwd"
    cwd.mkdir()
    try:
        assert recap(sh(DEPLOY, env, cwd).stdout)["failed"] == 0
        yield fake, env, cwd
    finally:
        fake.stop()


def _selects(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels, matchExpressions) as Prometheus operator and the API server read it."""
    terms = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op, key = expr["operator"], expr["key"]
        terms.append({"In": f"{key} in ({','.join(expr.get('values', []))})", "NotIn": f"{key} notin ({','.join(expr.get('values', []))})",
                      "Exists": key, "DoesNotExist": f"!{key}"}[op])
    return all(labels_match(labels, term) for term in terms)


def _scraped(fake, monitor: dict) -> dict:
    """{Service name: its port the monitor's endpoint names} of the Services a ServiceMonitor selects."""
    spec = monitor["spec"]
    out = {}
    for namespace in spec["namespaceSelector"]["matchNames"]:
        for name in fake.names("services", namespace):
            service = fake.objects[("services", namespace, name)]
            if _selects(spec["selector"], service["metadata"].get("labels") or {}):
                ports = [p for p in service["spec"]["ports"] if p.get("name") == spec["endpoints"][0]["port"]]
                out[name] = ports[0] if ports else None
    return out


def _monitoring_objects(fake) -> set:
    return {(r, ns, n) for (r, ns, n), o in fake.objects.items()
            if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "monitoring"
            and (o["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "rhpds.litemaas"}


# ---------------------------------------------------------------- KServe's predictors (docs/troubleshooting.md 12)

def test_predictor_commands_list_the_models_their_pods_and_why_one_is_pending(cluster):
    fake, env, cwd = cluster
    out = sh("oc get inferenceservice -A; oc get pods -n llm-hosting -l component=predictor", env, cwd).stdout.splitlines()
    header = out[0].split()
    assert header[:4] == ["NAMESPACE", "NAME", "URL", "READY"], out
    models = {tuple(line.split()[:2]): line.split()[3] for line in out[1:5]}
    # Two GPUs: two vLLM models Ready, the third waits for a GPU; the CPU model in ovms is Ready.
    assert models == {("llm-hosting", "granite-3-8b"): "True", ("llm-hosting", "llama-3-1-8b"): "True", ("llm-hosting", "mistral-7b"): "False",
                      ("ovms", "bge-small"): "True"}, out
    pods = out[5:]
    assert pods[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], out
    status = {line.split()[0]: line.split()[1:3] for line in pods[1:]}
    assert sorted(status) == fake.names("pods", "llm-hosting") and len(status) == 3, out
    pending = [name for name, (ready, phase) in status.items() if phase == "Pending"]
    assert len(pending) == 1 and pending[0].startswith("mistral-7b-predictor-"), status
    assert sorted(phase for dummy, phase in status.values()) == ["Pending", "Running", "Running"]
    # The pod the reader picks from that list: its last lines say why it waits.
    described = sh("oc describe pod -n llm-hosting $POD | tail -20", dict(env, POD=pending[0]), cwd).stdout
    assert len(described.splitlines()) <= 20
    assert re.search(r"Warning\s+FailedScheduling\s+.*default-scheduler\s+0/1 nodes are available: 1 Insufficient nvidia.com/gpu\.", described), described


def test_predictor_services_are_listed_with_the_labels_the_monitors_select(cluster):
    fake, env, cwd = cluster
    out = sh("oc -n llm-hosting get svc -l component=predictor --show-labels", env, cwd).stdout.splitlines()
    assert out[0].split()[0] == "NAME" and out[0].split()[-1] == "LABELS", out
    shown = {line.split()[0]: dict(kv.split("=", 1) for kv in line.split()[-1].split(",")) for line in out[1:]}
    assert sorted(shown) == [f"{m}-predictor" for m in VLLM_MODELS], out
    for name, labels in shown.items():
        assert labels == fake.objects[("services", "llm-hosting", name)]["metadata"]["labels"]
        assert labels["component"] == "predictor" and labels["serving.kserve.io/inferenceservice"] == name.removesuffix("-predictor")


# ---------------------------------------------------------------- the monitoring playbook (docs/monitoring.md, day2.md)

def test_monitoring_commands_install_the_monitors_rules_and_grafana_and_a_rerun_changes_nothing(cluster):
    fake, env, cwd = cluster
    # playbooks/monitoring.yml's line: the proxy's monitor and alerts, every vLLM predictor of llm-hosting, Grafana.
    first = sh(MONITORING_PLAYBOOK, env, cwd)
    assert recap(first.stdout)["failed"] == 0
    assert "Grafana: deploying this role's Grafana" in first.stdout  # no Grafana operator on this cluster
    proxy = fake.objects[("servicemonitors", NS, "litemaas-proxy")]
    scraped = _scraped(fake, proxy)
    assert list(scraped) == ["litellm"] and scraped["litellm"]["name"] == "http", scraped
    rule = fake.objects[("prometheusrules", NS, "litemaas-proxy-alerts")]
    assert [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r] == ALERTS
    vllm = fake.objects[("servicemonitors", "llm-hosting", "litemaas-vllm-models")]
    assert _scraped(fake, vllm) == {f"{m}-predictor": {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080} for m in VLLM_MODELS}
    assert vllm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert ("servicemonitors", "nvidia-gpu-operator", "litemaas-dcgm-exporter") not in fake.objects
    grafana = {("deployments", NS, "litemaas-grafana"), ("services", NS, "litemaas-grafana"), ("routes", NS, "litemaas-grafana"),
               ("secrets", NS, "litemaas-grafana-admin"), ("configmaps", NS, "litemaas-grafana-dashboards"),
               ("serviceaccounts", NS, "litemaas-grafana")}
    assert grafana <= set(fake.objects), sorted(set(grafana) - set(fake.objects))
    assert fake.objects[("deployments", NS, "litemaas-grafana")]["status"]["readyReplicas"] == 1
    dashboards = fake.objects[("configmaps", NS, "litemaas-grafana-dashboards")]["data"]
    assert sorted(dashboards) == ["litemaas-gpu.json", "litemaas-proxy.json", "litemaas-vllm.json"]
    assert [json.loads(dashboards[f"{d}.json"])["uid"] for d in ("litemaas-proxy", "litemaas-vllm", "litemaas-gpu")] == \
        ["litemaas-proxy", "litemaas-vllm", "litemaas-gpu"]

    # docs/day2.md's line: the same, and the DCGM exporter's monitor in the GPU operator's namespace.
    assert recap(sh(MONITORING_DAY2, env, cwd).stdout)["failed"] == 0
    dcgm = fake.objects[("servicemonitors", "nvidia-gpu-operator", "litemaas-dcgm-exporter")]
    assert dcgm["spec"]["selector"] == {"matchLabels": {"app": "nvidia-dcgm-exporter"}} and dcgm["spec"]["endpoints"][0]["port"] == "gpu-metrics"
    # What the GPU operator runs there (its Service, as the operator creates it) is what that monitor scrapes.
    fake.add({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nvidia-dcgm-exporter", "namespace": "nvidia-gpu-operator",
                                                                  "labels": {"app": "nvidia-dcgm-exporter"}},
              "spec": {"selector": {"app": "nvidia-dcgm-exporter"}, "ports": [{"name": "gpu-metrics", "port": 9400, "targetPort": 9400}]}})
    assert list(_scraped(fake, dcgm)) == ["nvidia-dcgm-exporter"] and _scraped(fake, dcgm)["nvidia-dcgm-exporter"]["port"] == 9400

    # docs/monitoring.md's line: only two of the vLLM models, and the OpenVINO models of ovms.
    third = sh(MONITORING_DOC, env, cwd)
    assert recap(third.stdout)["failed"] == 0
    vllm = fake.objects[("servicemonitors", "llm-hosting", "litemaas-vllm-models")]
    assert sorted(_scraped(fake, vllm)) == ["granite-3-8b-predictor", "llama-3-1-8b-predictor"]
    ovms = fake.objects[("servicemonitors", "ovms", "litemaas-openvino-models")]
    assert _scraped(fake, ovms) == {"bge-small-predictor": {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8888}}
    installed = _monitoring_objects(fake)
    assert {("servicemonitors", "llm-hosting", "litemaas-vllm-models"), ("servicemonitors", "ovms", "litemaas-openvino-models"),
            ("servicemonitors", "nvidia-gpu-operator", "litemaas-dcgm-exporter"), ("servicemonitors", NS, "litemaas-proxy"),
            ("prometheusrules", NS, "litemaas-proxy-alerts")} | grafana <= installed, installed

    # Run again: nothing changes, on the cluster or in the play's report.
    versions = {k: fake.objects[k]["metadata"]["resourceVersion"] for k in installed}
    again = sh(MONITORING_DOC, env, cwd)
    assert recap(again.stdout)["changed"] == 0, re.findall(r"^changed: .*$", again.stdout, re.M)
    assert _monitoring_objects(fake) == installed
    assert {k: fake.objects[k]["metadata"]["resourceVersion"] for k in installed} == versions

    # The ServiceMonitors the reader then lists in llm-hosting.
    out = sh("oc -n llm-hosting get servicemonitor", env, cwd).stdout.splitlines()
    assert out[0].split()[:1] == ["NAME"] and [line.split()[0] for line in out[1:]] == ["litemaas-vllm-models"], out


def test_grafana_commands_print_its_address_and_admin_password(cluster):
    fake, env, cwd = cluster
    if ("routes", NS, "litemaas-grafana") not in fake.objects:
        sh(MONITORING_PLAYBOOK, env, cwd)
    route = fake.objects[("routes", NS, "litemaas-grafana")]
    # The role leaves the host empty by default: OpenShift chose <name>-<namespace>.<domain>.
    assert route["spec"]["host"] == f"litemaas-grafana-{NS}.{DOMAIN}"
    assert sh(GRAFANA_HOST, env, cwd).stdout == f"https://{route['spec']['host']}\n"
    password = sh(GRAFANA_PASSWORD, env, cwd).stdout
    stored = base64.b64decode(fake.objects[("secrets", NS, "litemaas-grafana-admin")]["data"]["GF_SECURITY_ADMIN_PASSWORD"]).decode()
    assert password == stored + "\n" and re.fullmatch(r"[A-Za-z0-9]{32}", stored), password
    # Grafana reads that Secret for its admin password.
    env_from = fake.objects[("deployments", NS, "litemaas-grafana")]["spec"]["template"]["spec"]["containers"][0]
    assert "litemaas-grafana-admin" in json.dumps(env_from)


# ---------------------------------------------------------------- docs/troubleshooting.md 7 and 15

def test_serviceaccount_mode_check_prints_the_redirect_uris_of_the_routes(cluster):
    fake, env, cwd = cluster
    out = sh("oc get sa litemaas-oauth -n $NS -o jsonpath='{.metadata.annotations}'; echo", env, cwd).stdout
    annotations = json.loads(out)
    assert annotations == fake.objects[("serviceaccounts", NS, "litemaas-oauth")]["metadata"]["annotations"]
    redirects = {k: v for k, v in annotations.items() if k.startswith("serviceaccounts.openshift.io/oauth-redirecturi.")}
    hosts = {n: fake.objects[("routes", NS, n)]["spec"]["host"] for n in ("litellm-frontend", "litellm-admin")}
    assert sorted(redirects.values()) == sorted(f"https://{h}/api/auth/callback" for h in hosts.values()), annotations
    assert ("oauthclients", "", NS) not in fake.objects  # serviceaccount mode: no OAuthClient


def test_job_commands_list_the_jobs_and_show_the_failed_ones_log(cluster):
    fake, env, cwd = cluster
    # A backup whose pg_dump fails: what its container prints, and its exit code.
    fake.set_pod_log(NS, "litemaas-backup-broken-", 'pg_dump: error: connection to server failed: FATAL:  password authentication failed\n')
    fake.set_pod_exit(NS, "litemaas-backup-broken-", 1)
    proc = subprocess.run(["bash", "-c", "ansible-playbook rhpds.litemaas.backup -e litemaas_backup_name=broken"], env=env, cwd=str(cwd),
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "Job/litemaas/litemaas-backup-broken: failed: BackoffLimitExceeded" in proc.stdout
    job = fake.objects[("jobs", NS, "litemaas-backup-broken")]
    assert job["status"]["failed"] == 2
    out = sh("oc get jobs -n $NS; oc logs -n $NS job/$JOB", dict(env, JOB="litemaas-backup-broken"), cwd).stdout.splitlines()
    assert out[0].split()[0] == "NAME", out
    listed = [line.split()[0] for line in out[1:] if line.startswith("litemaas-")]
    assert listed == fake.names("jobs", NS) == ["litemaas-backup-broken"], out
    assert out[-1] == "pg_dump: error: connection to server failed: FATAL:  password authentication failed", out

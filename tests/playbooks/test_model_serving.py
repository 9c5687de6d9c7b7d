"""KServe model serving: the litemaas_model_serving role renders every runtime kind (auth on and off, Argo CD) valid
against the upstream CRDs; inference_service_info discovers InferenceServices shaped as KServe reports them from the
in-memory API; the models role registers them in the real proxy, a chat reaches the model server behind them, and a
removed InferenceService is removed."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.playbooks.conftest import REPO, load_dir, recap
from tests.playbooks.test_day2_roles import test_argument_specs_match_defaults as argument_specs_match_defaults
from tests.support import k8s_schemas

ALL_KINDS = ["granite-3-2-8b-instruct", "granite-4-0-h-tiny", "llama-guard-3-1b", "nomic-embed-text-v1-5", "granite-docling-258m",
             {"name": "tiny-cpu", "runtime": "openvino", "storage_uri": "oci://quay.io/example/tiny:1", "auth": False, "visibility": "exposed"}]


def _render(playbook, out, **extra):
    variables = dict({"ocp4_workload_litemaas_render_dir": str(out), "litemaas_model_serving_models": ALL_KINDS}, **extra)
    first = playbook.run("model_serving.yml", variables)
    second = playbook.run("model_serving.yml", variables)
    return first, second, load_dir(out)


@pytest.mark.parametrize("role", ["litemaas_model_serving", "litemaas_models"])
def test_argument_specs_match_defaults(role):
    argument_specs_match_defaults(role)


def test_render_with_auth_and_argocd(playbook, work_dir):
    out = work_dir / "render-model-serving-auth"
    first, second, docs = _render(playbook, out, litemaas_model_serving_auth=True, litemaas_model_serving_argocd_enabled=True,
                                  litemaas_model_serving_argocd_repo_url="https://git.example.com/models.git")
    assert recap(first.stdout)["changed"] == 1 and recap(second.stdout)["changed"] == 0
    got = {path: [(d["kind"], d["metadata"]["name"]) for d in objs] for path, objs in docs.items()}
    assert got == {
        "model-serving-argocd/application.yaml": [("Application", "model-serving")],
        "model-serving/auth.yaml": [("ServiceAccount", "litemaas-model-client"), ("Role", "litemaas-model-client"),
                                    ("RoleBinding", "litemaas-model-client"), ("Secret", "litemaas-model-client-token")],
        "model-serving/inferenceservice-granite-3-2-8b-instruct.yaml": [("InferenceService", "granite-3-2-8b-instruct")],
        "model-serving/inferenceservice-granite-4-0-h-tiny.yaml": [("InferenceService", "granite-4-0-h-tiny")],
        "model-serving/inferenceservice-granite-docling-258m.yaml": [("InferenceService", "granite-docling-258m")],
        "model-serving/inferenceservice-llama-guard-3-1b.yaml": [("InferenceService", "llama-guard-3-1b")],
        "model-serving/inferenceservice-nomic-embed-text-v1-5.yaml": [("InferenceService", "nomic-embed-text-v1-5")],
        "model-serving/inferenceservice-tiny-cpu.yaml": [("InferenceService", "tiny-cpu")],
        "model-serving/servingruntime-docling-serve-v1.14.3.yaml": [("ServingRuntime", "docling-serve-v1.14.3")],
        "model-serving/servingruntime-granite-4-0-h-tiny-vllm-runtime.yaml": [("ServingRuntime", "granite-4-0-h-tiny-vllm-runtime")],
        "model-serving/servingruntime-ovms-runtime.yaml": [("ServingRuntime", "ovms-runtime")],
        "model-serving/servingruntime-tei-gpu.yaml": [("ServingRuntime", "tei-gpu")],
        "model-serving/servingruntime-vllm-runtime.yaml": [("ServingRuntime", "vllm-runtime")],
    }
    report = k8s_schemas.assert_valid(out, minimum=16)
    assert report.validators_of("InferenceService") == {"crd inferenceservices.serving.kserve.io"}
    assert report.validators_of("ServingRuntime") == {"crd servingruntimes.serving.kserve.io"}
    assert report.validators_of("Application") == {"crd applications.argoproj.io"}

    isvc = {d["metadata"]["name"]: d for objs in docs.values() for d in objs if d["kind"] == "InferenceService"}
    granite = isvc["granite-3-2-8b-instruct"]
    assert granite["metadata"]["annotations"] == {"openshift.io/display-name": "Granite 3.2 8B Instruct",
                                                  "security.opendatahub.io/enable-auth": "true",
                                                  "serving.kserve.io/deploymentMode": "RawDeployment"}
    assert granite["metadata"]["labels"]["opendatahub.io/dashboard"] == "true"
    assert granite["spec"]["predictor"] == {
        "minReplicas": 2, "maxReplicas": 2, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "model": {"modelFormat": {"name": "vLLM"}, "runtime": "vllm-runtime",
                  "storageUri": "oci://quay.io/redhat-ai-services/modelcar-catalog:granite-3.2-8b-instruct",
                  "args": ["--max-model-len=131072", "--enable-auto-tool-choice", "--tool-call-parser=granite"],
                  "resources": {"requests": {"cpu": "2", "memory": "16Gi", "nvidia.com/gpu": "1"},
                                "limits": {"cpu": "8", "memory": "24Gi", "nvidia.com/gpu": "1"}}}}
    assert isvc["llama-guard-3-1b"]["spec"]["predictor"]["model"]["storage"] == {"key": "aws-connection-models", "path": "llama-guard-3-1b"}
    assert isvc["granite-4-0-h-tiny"]["spec"]["predictor"]["model"]["runtime"] == "granite-4-0-h-tiny-vllm-runtime"
    assert isvc["nomic-embed-text-v1-5"]["spec"]["predictor"]["model"]["modelFormat"] == {"name": "sbert"}
    assert isvc["granite-docling-258m"]["spec"]["predictor"]["model"]["modelFormat"] == {"name": "Docling"}
    cpu = isvc["tiny-cpu"]
    assert "security.opendatahub.io/enable-auth" not in cpu["metadata"]["annotations"]  # the entry's auth: false wins
    assert cpu["metadata"]["labels"]["networking.kserve.io/visibility"] == "exposed"
    assert "nvidia.com/gpu" not in json.dumps(cpu) and "tolerations" not in cpu["spec"]["predictor"]

    runtimes = {d["metadata"]["name"]: d for objs in docs.values() for d in objs if d["kind"] == "ServingRuntime"}
    vllm = runtimes["vllm-runtime"]["spec"]
    assert vllm["containers"][0]["command"] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    assert vllm["containers"][0]["args"] == ["--port=8080", "--model=/mnt/models", "--served-model-name={{.Name}}"]
    assert vllm["volumes"] == [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]
    assert vllm["annotations"] == {"prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}
    assert runtimes["granite-4-0-h-tiny-vllm-runtime"]["spec"]["containers"][0]["image"] == "quay.io/modh/vllm:rhoai-2.24-cuda"
    assert runtimes["tei-gpu"]["spec"]["containers"][0]["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert runtimes["docling-serve-v1.14.3"]["spec"]["containers"][0]["ports"] == [{"containerPort": 5001, "protocol": "TCP"}]
    assert runtimes["docling-serve-v1.14.3"]["spec"]["annotations"]["prometheus.io/port"] == "5001"
    assert runtimes["ovms-runtime"]["spec"]["containers"][0]["ports"] == [{"containerPort": 8888, "protocol": "TCP"}]

    role = docs["model-serving/auth.yaml"][1]
    assert role["rules"] == [{"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": ["get", "list"]}]
    token = docs["model-serving/auth.yaml"][3]
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "litemaas-model-client"}
    app = docs["model-serving-argocd/application.yaml"][0]
    assert app["metadata"]["namespace"] == "openshift-gitops"
    assert app["spec"]["source"] == {"repoURL": "https://git.example.com/models.git", "targetRevision": "HEAD", "path": "model-serving"}
    assert app["spec"]["destination"] == {"server": "https://kubernetes.default.svc", "namespace": "llm-hosting"}
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_render_without_auth_prunes_the_auth_objects(playbook, work_dir):
    out = work_dir / "render-model-serving-noauth"
    _render(playbook, out, litemaas_model_serving_auth=True)
    assert (out / "model-serving" / "auth.yaml").exists()
    first, second, docs = _render(playbook, out, litemaas_model_serving_models=ALL_KINDS[3:5])
    assert sorted(docs) == ["model-serving/inferenceservice-granite-docling-258m.yaml", "model-serving/inferenceservice-nomic-embed-text-v1-5.yaml",
                            "model-serving/servingruntime-docling-serve-v1.14.3.yaml", "model-serving/servingruntime-tei-gpu.yaml"]
    for objs in docs.values():
        for obj in objs:
            assert "security.opendatahub.io/enable-auth" not in (obj["metadata"].get("annotations") or {})
    k8s_schemas.assert_valid(out, minimum=4)
    assert recap(second.stdout)["changed"] == 0


@pytest.mark.parametrize("models, words", [
    ([{"name": "x", "runtime": "triton", "storage_uri": "oci://a/b:1"}], ["litemaas_model_serving_models", "Wrong entries: ['x']"]),
    ([{"name": "y", "runtime": "vllm"}], ["storage_uri or storage", "Wrong entries: ['y']"]),
    (["granite-3-2-8b-instruct", "granite-3-2-8b-instruct"], ["once each"]),
    (["Not_A_Name"], ["a DNS label"]),
])
def test_wrong_models_fail_before_anything_is_written(playbook, render_dir, models, words):
    proc = playbook.run("model_serving.yml", {"ocp4_workload_litemaas_render_dir": str(render_dir), "litemaas_model_serving_models": models},
                        expect_rc=2)
    for word in words:
        assert word in proc.stdout, (word, proc.stdout[-3000:])
    assert list(render_dir.iterdir()) == []


# ---------------------------------------------------------------- the cluster path, discovery and registration


def test_deploy_playbook_renders_the_platform_and_its_models_in_one_run(playbook, work_dir):
    out = work_dir / "render-deploy-with-models"
    variables = {"ocp4_workload_litemaas_render_dir": str(out), "litemaas_model_serving_models": ["nomic-embed-text-v1-5"],
                 "litemaas_models_discover": True}
    first = playbook.run("deploy.yml", variables)
    assert "Register the served models in the proxy" in first.stdout  # skipped in render mode: no proxy to register in
    docs = load_dir(out)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs["model-serving/inferenceservice-nomic-embed-text-v1-5.yaml"]] == [
        ("InferenceService", "nomic-embed-text-v1-5")]
    assert any(d["kind"] == "Deployment" and d["metadata"]["name"] == "litellm" for objs in docs.values() for d in objs)
    again = playbook.run("deploy.yml", variables)
    assert recap(again.stdout)["changed"] == 0


def test_gitops_command_line_of_the_docs_renders_the_example(ansible_env, tmp_path):
    """The GitOps command of docs/model-serving.md, exactly as written, with the models.yml shown there."""
    import subprocess

    text = (REPO / "docs" / "model-serving.md").read_text()
    (tmp_path / "models.yml").write_text(re.search(r"with `models.yml` like:\n\n```yaml\n(.*?)```", text, re.S).group(1))
    line = next(m for m in re.findall(r"```sh\n(.*?)\n```", text, re.S) if "/gitops" in m)
    proc = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=ansible_env, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    docs = load_dir(tmp_path / "gitops")
    assert sorted(docs) == ["model-serving-argocd/application.yaml", "model-serving/inferenceservice-granite-3-2-8b-instruct.yaml",
                            "model-serving/inferenceservice-nomic-embed-text-v1-5.yaml", "model-serving/inferenceservice-phi-mini.yaml",
                            "model-serving/servingruntime-ovms-runtime.yaml", "model-serving/servingruntime-tei-gpu.yaml",
                            "model-serving/servingruntime-vllm-runtime.yaml"]
    assert docs["model-serving/inferenceservice-nomic-embed-text-v1-5.yaml"][0]["spec"]["predictor"]["model"]["storage"] == {
        "key": "my-s3-connection", "path": "models/nomic-embed-text-v1.5"}
    k8s_schemas.assert_valid(tmp_path / "gitops", minimum=7)


def test_catalog_table_of_the_docs_matches_the_defaults():
    text = (REPO / "docs" / "model-serving.md").read_text()
    catalog = yaml.safe_load((REPO / "roles" / "litemaas_model_serving" / "defaults" / "main.yml").read_text())["litemaas_model_serving_catalog"]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| `(\w+)` \|", text.split("### Default catalog", 1)[1].split("###", 1)[0], re.M)
    assert rows == [(name, entry["runtime"]) for name, entry in catalog.items()]

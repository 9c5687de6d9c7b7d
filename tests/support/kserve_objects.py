"""InferenceService and ServingRuntime objects shaped as KServe (RawDeployment, OpenShift AI) reports them: the spec the
litemaas_model_serving role applies plus the status the KServe controller writes (conditions, address.url without a
port, url from the domain template)."""

from __future__ import annotations


def serving_runtime(name: str, namespace: str, fmt: str, image: str, args: list, command: list | None = None) -> dict:
    container = {"name": "kserve-container", "image": image, "args": args, "ports": [{"containerPort": 8080, "protocol": "TCP"}]}
    if command:
        container["command"] = command
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
            "metadata": {"name": name, "namespace": namespace, "annotations": {"opendatahub.io/apiProtocol": "REST"}},
            "spec": {"supportedModelFormats": [{"name": fmt, "autoSelect": True}], "multiModel": False, "containers": [container]}}


VLLM_ARGS = ["--port=8080", "--model=/mnt/models", "--served-model-name={{.Name}}"]


def vllm_runtime(namespace: str, name: str = "vllm-runtime") -> dict:
    return serving_runtime(name, namespace, "vLLM", "quay.io/modh/vllm:rhoai-2.23-cuda", VLLM_ARGS,
                           ["python", "-m", "vllm.entrypoints.openai.api_server"])


def tei_runtime(namespace: str) -> dict:
    return serving_runtime("tei-gpu", namespace, "sbert", "ghcr.io/huggingface/text-embeddings-inference:turing-1.5",
                           ["--model-id=/mnt/models/", "--port=8080"])


def docling_runtime(namespace: str) -> dict:
    return serving_runtime("docling-serve-v1.14.3", namespace, "Docling", "quay.io/docling-project/docling-serve-cu128:v1.14.3",
                           ["--host=0.0.0.0", "--port=5001"], ["python", "-m", "docling_serve", "run"])


def inference_service(name: str, namespace: str, fmt: str, runtime: str, *, args: list | None = None, annotations: dict | None = None,
                      address: str | None = None, url: str | None = None, ready: bool = True, reason: str = "", message: str = "") -> dict:
    model = {"modelFormat": {"name": fmt}, "runtime": runtime, "storage": {"key": "aws-connection-models", "path": name}}
    if args:
        model["args"] = args
    ann = {"serving.kserve.io/deploymentMode": "RawDeployment", "openshift.io/display-name": name}
    ann.update(annotations or {})
    obj = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
           "metadata": {"name": name, "namespace": namespace, "annotations": ann, "labels": {"opendatahub.io/dashboard": "true"}},
           "spec": {"predictor": {"minReplicas": 1, "maxReplicas": 1, "model": model}}}
    obj["status"] = status(name, namespace, address=address, url=url, ready=ready, reason=reason, message=message)
    return obj


def status(name: str, namespace: str, *, address: str | None = None, url: str | None = None, ready: bool = True, reason: str = "",
           message: str = "") -> dict:
    address = address or f"http://{name}-predictor.{namespace}.svc.cluster.local"
    conditions = [{"type": "IngressReady", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                  {"type": "PredictorReady", "status": "True" if ready else "False", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                  {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    if not ready:
        for cond in conditions[1:]:
            cond.update(reason=reason or "MinimumReplicasUnavailable", message=message or "Deployment does not have minimum availability.")
    out = {"observedGeneration": 1, "address": {"url": address}, "url": url or address, "conditions": conditions,
           "modelStatus": {"states": {"activeModelState": "Loaded" if ready else "Pending", "targetModelState": "Loaded"}}}
    return out

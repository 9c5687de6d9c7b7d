# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)
"""KServe InferenceServices: a small Kubernetes client (``K8S_API_ARGSPEC``, read only) and the pure logic that turns an
InferenceService (and its ServingRuntime) into what the proxy needs: served model name, kind, OpenAI base URL, auth,
readiness, and the proxy model entry."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import re

from ansible.module_utils.basic import env_fallback

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.rest import ApiException

    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module with missing_required_lib
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = exc

    class ApiException(Exception):  # noqa: N818 - the name of the kubernetes library's class
        """Stands in for kubernetes.client.rest.ApiException when the library is missing (the module then fails first)."""

GROUP = "serving.kserve.io"
ISVC_VERSION = "v1beta1"
RUNTIME_VERSION = "v1alpha1"

# Annotations and labels read on InferenceServices.
AUTH_ANNOTATION = "security.opendatahub.io/enable-auth"
DISPLAY_NAME_ANNOTATION = "openshift.io/display-name"
MODEL_NAME_ANNOTATION = "litemaas.rhpds.io/model-name"
KIND_ANNOTATION = "litemaas.rhpds.io/kind"
KINDS = ("chat", "embeddings", "docling")

# Marks a proxy model registered from an InferenceService (model_info keys).
SOURCE_KEY = "litemaas_source"
SOURCE_VALUE = "kserve"
ISVC_KEY = "litemaas_inference_service"

# Connection options: the names of kubernetes.core's, so one module_defaults block serves both.
K8S_API_ARGSPEC = dict(
    kubeconfig=dict(type="path", fallback=(env_fallback, ["K8S_AUTH_KUBECONFIG"])),
    context=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_CONTEXT"])),
    host=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_HOST"])),
    api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["K8S_AUTH_API_KEY"])),
    validate_certs=dict(type="bool", aliases=["verify_ssl"], fallback=(env_fallback, ["K8S_AUTH_VERIFY_SSL"])),
    ca_cert=dict(type="path", aliases=["ssl_ca_cert"], fallback=(env_fallback, ["K8S_AUTH_SSL_CA_CERT"])),
)


class KServeError(Exception):
    """A Kubernetes API call failed; the message names the call, the status and the server's message."""


class KServeClient(object):
    """Reads InferenceServices, ServingRuntimes and Secrets through the Kubernetes API."""

    def __init__(self, api_client):
        self.api_client = api_client
        self.custom = k8s_client.CustomObjectsApi(api_client)
        self.core = k8s_client.CoreV1Api(api_client)

    @classmethod
    def from_params(cls, params):
        if params.get("host"):
            conf = k8s_client.Configuration()
            conf.host = params["host"]
            if params.get("api_key"):
                conf.api_key = {"authorization": "Bearer " + params["api_key"]}
            if params.get("validate_certs") is not None:
                conf.verify_ssl = params["validate_certs"]
            if params.get("ca_cert"):
                conf.ssl_ca_cert = params["ca_cert"]
            return cls(k8s_client.ApiClient(conf))
        kubeconfig = params.get("kubeconfig") or os.path.expanduser(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
        if not os.path.exists(kubeconfig) and os.environ.get("KUBERNETES_SERVICE_HOST"):
            conf = k8s_client.Configuration()
            k8s_config.load_incluster_config(client_configuration=conf)
            return cls(k8s_client.ApiClient(conf))
        conf = k8s_client.Configuration()
        try:
            k8s_config.load_kube_config(config_file=kubeconfig, context=params.get("context"), client_configuration=conf)
        except (k8s_config.ConfigException, OSError) as exc:
            raise KServeError("Cannot read the kubeconfig %s: %s" % (kubeconfig, exc))
        if params.get("validate_certs") is not None:
            conf.verify_ssl = params["validate_certs"]
        if params.get("ca_cert"):
            conf.ssl_ca_cert = params["ca_cert"]
        return cls(k8s_client.ApiClient(conf))

    def _call(self, what, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ApiException as exc:
            message = exc.reason
            try:
                message = json.loads(exc.body).get("message") or message
            except (TypeError, ValueError, AttributeError):
                pass
            raise KServeError("%s: HTTP %s %s" % (what, exc.status, message))
        except Exception as exc:  # urllib3 connection errors and the like
            raise KServeError("%s: %s" % (what, exc))

    def list_inference_services(self, namespace, label_selector=""):
        path = "GET /apis/%s/%s/namespaces/%s/inferenceservices" % (GROUP, ISVC_VERSION, namespace)
        found = self._call(path, self.custom.list_namespaced_custom_object, GROUP, ISVC_VERSION, namespace, "inferenceservices",
                           label_selector=label_selector or "")
        return found.get("items") or []

    def list_serving_runtimes(self, namespace):
        """ServingRuntimes of a namespace; none when the kind is not served (a missing runtime only loses the name fallback)."""
        path = "GET /apis/%s/%s/namespaces/%s/servingruntimes" % (GROUP, RUNTIME_VERSION, namespace)
        try:
            found = self.custom.list_namespaced_custom_object(GROUP, RUNTIME_VERSION, namespace, "servingruntimes")
        except ApiException as exc:
            if exc.status in (403, 404):
                return []
            raise KServeError("%s: HTTP %s %s" % (path, exc.status, exc.reason))
        except Exception as exc:
            raise KServeError("%s: %s" % (path, exc))
        return found.get("items") or []

    def read_secret_value(self, namespace, name, key):
        secret = self._call("GET /api/v1/namespaces/%s/secrets/%s" % (namespace, name), self.core.read_namespaced_secret, name, namespace)
        data = (secret.data or {}).get(key)
        if not data:
            raise KServeError("Secret %s/%s has no %s yet" % (namespace, name, key))
        return base64.b64decode(data).decode("utf-8")


# ---------------------------------------------------------------- pure logic (unit-tested)

def _flag_value(args, flag):
    """The value of ``--flag=value`` or ``--flag value`` in a list of container args (the last one wins), or None."""
    value = None
    args = list(args or [])
    for i, arg in enumerate(args):
        arg = str(arg)
        if arg.startswith(flag + "="):
            value = arg[len(flag) + 1:]
        elif arg == flag and i + 1 < len(args):
            value = str(args[i + 1])
        elif arg.startswith(flag + " "):  # "--tool-call-parser granite" written as one item
            value = arg[len(flag) + 1:].strip()
    return value


def _has_flag(args, flag):
    return any(str(a) == flag or str(a).startswith(flag + "=") or str(a).startswith(flag + " ") for a in args or [])


def predictor_model(isvc):
    return ((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}


def runtime_of(isvc, runtimes):
    """The ServingRuntime the InferenceService names (``spec.predictor.model.runtime``), else the first that supports its
    model format with autoSelect; None when not found."""
    model = predictor_model(isvc)
    name = model.get("runtime")
    fmt = ((model.get("modelFormat") or {}).get("name") or "").lower()
    for rt in runtimes or []:
        if name and rt["metadata"]["name"] == name:
            return rt
    if name:
        return None
    for rt in runtimes or []:
        for f in (rt.get("spec") or {}).get("supportedModelFormats") or []:
            if (f.get("name") or "").lower() == fmt and f.get("autoSelect"):
                return rt
    return None


def runtime_container(runtime):
    containers = ((runtime or {}).get("spec") or {}).get("containers") or []
    for c in containers:
        if c.get("name") == "kserve-container":
            return c
    return containers[0] if containers else {}


def served_model_name(isvc, runtime):
    """``--served-model-name`` of the predictor's args, else of the runtime's args with ``{{.Name}}`` resolved to the
    InferenceService name, else the InferenceService name."""
    name = isvc["metadata"]["name"]
    value = _flag_value(predictor_model(isvc).get("args"), "--served-model-name")
    if value:
        return value
    container = runtime_container(runtime)
    value = _flag_value(list(container.get("command") or []) + list(container.get("args") or []), "--served-model-name")
    if value:
        return re.sub(r"\{\{\s*\.Name\s*\}\}", name, value)
    return name


def runtime_family(isvc, runtime):
    """vllm, tei, docling, ovms or other - from the model format, then the runtime's image and command."""
    fmt = ((predictor_model(isvc).get("modelFormat") or {}).get("name") or "").lower()
    container = runtime_container(runtime)
    text = " ".join([str(container.get("image") or "")] + [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]).lower()
    if fmt == "docling" or "docling" in text:
        return "docling"
    if fmt in ("sbert", "tei") or "text-embeddings-inference" in text or "text-embeddings-router" in text:
        return "tei"
    if fmt in ("openvino_ir", "openvino", "onnx") or "openvino_model_server" in text or "/ovms" in text:
        return "ovms"
    if fmt == "vllm" or "vllm" in text:
        return "vllm"
    return "other"


def model_kind(isvc, runtime):
    """chat, embeddings or docling: the annotation ``litemaas.rhpds.io/kind`` when set, else from the runtime family."""
    annotated = (isvc["metadata"].get("annotations") or {}).get(KIND_ANNOTATION)
    if annotated in KINDS:
        return annotated
    family = runtime_family(isvc, runtime)
    return {"tei": "embeddings", "docling": "docling"}.get(family, "chat")


# OpenAI-compatible path of each runtime family behind the predictor Service (port 80 -> the container port).
API_PATHS = {"vllm": "/v1", "tei": "/v1", "ovms": "/v3", "other": "/v1", "docling": ""}


def openai_base(address_url, family):
    """The URL the proxy sends to: ``status.address.url`` (``http://<isvc>-predictor.<ns>.svc.cluster.local``, no port:
    the predictor Service listens on 80 and forwards to the container port) plus the runtime's API path (``/v1`` for
    vLLM and text-embeddings-inference, ``/v3`` for OpenVINO model server, nothing for docling-serve, whose routes the
    proxy's ``/docling`` pass-through appends)."""
    if not address_url:
        return None
    return address_url.rstrip("/") + API_PATHS.get(family, "/v1")


def ready_condition(isvc):
    """(ready, reason): the ``Ready`` condition; the reason (or message) of the first false condition when not ready."""
    conditions = (isvc.get("status") or {}).get("conditions") or []
    by_type = dict((c.get("type"), c) for c in conditions)
    ready = by_type.get("Ready", {}).get("status") == "True"
    if ready:
        return True, None
    for ctype in ("Ready", "PredictorReady", "IngressReady"):
        cond = by_type.get(ctype)
        if cond and cond.get("status") != "True":
            text = cond.get("reason") or ""
            if cond.get("message"):
                text = (text + ": " if text else "") + cond["message"]
            return False, "%s %s" % (ctype, text or cond.get("status") or "Unknown")
    return False, "no Ready condition yet"


def describe(isvc, runtimes):
    """What discovery returns for one InferenceService."""
    meta = isvc["metadata"]
    annotations = meta.get("annotations") or {}
    runtime = runtime_of(isvc, runtimes)
    family = runtime_family(isvc, runtime)
    status = isvc.get("status") or {}
    address = (status.get("address") or {}).get("url")
    ready, reason = ready_condition(isvc)
    model = predictor_model(isvc)
    container = runtime_container(runtime)
    args = list(container.get("args") or []) + list(model.get("args") or [])
    max_len = _flag_value(args, "--max-model-len")
    return {
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "display_name": annotations.get(DISPLAY_NAME_ANNOTATION) or meta["name"],
        "model_name": annotations.get(MODEL_NAME_ANNOTATION) or meta["name"],
        "served_model_name": served_model_name(isvc, runtime),
        "kind": model_kind(isvc, runtime),
        "runtime": runtime["metadata"]["name"] if runtime else model.get("runtime"),
        "runtime_family": family,
        "model_format": (model.get("modelFormat") or {}).get("name"),
        "ready": ready,
        "reason": reason,
        "auth": str(annotations.get(AUTH_ANNOTATION, "")).lower() == "true",
        "url": address,
        "external_url": status.get("url") if status.get("url") and status.get("url") != address else None,
        "api_base": openai_base(address, family),
        "tool_calling": _has_flag(args, "--enable-auto-tool-choice"),
        "max_model_len": int(max_len) if max_len and str(max_len).isdigit() else None,
    }


def proxy_model(info, model_info_defaults=None):
    """The proxy model (options of the ``model`` module) for one described InferenceService, with the fields the portal
    reads and the discovery marker in ``model_info``."""
    kind = info["kind"]
    if kind == "docling":
        model = "docling/" + info["model_name"]
        provider = "docling"
    else:
        model = "openai/" + info["served_model_name"]
        provider = "openai"
    model_info = {
        "mode": {"chat": "chat", "embeddings": "embedding", "docling": "convert"}[kind],
        "supports_embeddings": kind == "embeddings",
        "supports_convert": kind == "docling",
        "supports_vision": False,
        "supports_function_calling": bool(info.get("tool_calling")),
        "supports_tool_choice": bool(info.get("tool_calling")),
        "supports_parallel_function_calling": False,
        # vLLM serves /tokenize, /v1/responses and /v1/messages itself; the proxy translates the Responses and Messages
        # APIs to chat completions for the other chat runtimes (litellm_params responses_api / messages_api "chat").
        "supports_tokenize": kind == "chat" and info.get("runtime_family") == "vllm",
        "supports_responses_api": kind == "chat",
        "supports_messages_api": kind == "chat",
        SOURCE_KEY: SOURCE_VALUE,
        ISVC_KEY: "%s/%s" % (info["namespace"], info["name"]),
    }
    if info.get("max_model_len"):
        model_info["max_tokens"] = info["max_model_len"]
    model_info.update(model_info_defaults or {})
    litellm_params = {"custom_llm_provider": provider}
    if kind == "chat" and info.get("runtime_family") != "vllm":
        litellm_params.update(responses_api="chat", messages_api="chat")
    return {
        "model_name": info["model_name"],
        "model": model,
        "api_base": info["api_base"],
        "litellm_params": litellm_params,
        "model_info": model_info,
        "namespace": info["namespace"],
        "auth": info["auth"],
    }

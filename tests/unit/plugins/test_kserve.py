"""Pure logic of module_utils/kserve.py: served model name, kind, OpenAI base, readiness."""

from __future__ import annotations

import pytest
from ansible_collections.rhpds.litemaas.plugins.module_utils import kserve

from tests.support.kserve_objects import docling_runtime, inference_service, tei_runtime, vllm_runtime


@pytest.mark.parametrize("predictor_args, runtime_args, expected", [
    (None, ["--port=8080", "--served-model-name={{.Name}}"], "granite"),
    (None, ["--served-model-name={{ .Name }}-v2"], "granite-v2"),
    (["--served-model-name=meta-llama/Llama-Guard-3-1B"], ["--served-model-name={{.Name}}"], "meta-llama/Llama-Guard-3-1B"),
    (["--served-model-name", "two-items"], None, "two-items"),
    (None, ["--port=8080"], "granite"),
])
def test_served_model_name(predictor_args, runtime_args, expected):
    isvc = inference_service("granite", "ns", "vLLM", "rt", args=predictor_args)
    runtime = vllm_runtime("ns", "rt")
    runtime["spec"]["containers"][0]["args"] = runtime_args or []
    assert kserve.served_model_name(isvc, runtime) == expected


def test_served_model_name_without_a_runtime_is_the_name():
    assert kserve.served_model_name(inference_service("granite", "ns", "vLLM", "missing"), None) == "granite"


@pytest.mark.parametrize("fmt, runtime, annotations, kind, family", [
    ("vLLM", vllm_runtime("ns"), {}, "chat", "vllm"),
    ("sbert", tei_runtime("ns"), {}, "embeddings", "tei"),
    ("Docling", docling_runtime("ns"), {}, "docling", "docling"),
    ("openvino_ir", None, {}, "chat", "ovms"),
    ("openvino_ir", None, {"litemaas.rhpds.io/kind": "embeddings"}, "embeddings", "ovms"),
])
def test_kind_and_family(fmt, runtime, annotations, kind, family):
    isvc = inference_service("m", "ns", fmt, "x", annotations=annotations)
    assert (kserve.model_kind(isvc, runtime), kserve.runtime_family(isvc, runtime)) == (kind, family)


@pytest.mark.parametrize("family, expected", [
    ("vllm", "http://m-predictor.ns.svc.cluster.local/v1"), ("tei", "http://m-predictor.ns.svc.cluster.local/v1"),
    ("ovms", "http://m-predictor.ns.svc.cluster.local/v3"), ("docling", "http://m-predictor.ns.svc.cluster.local"),
])
def test_openai_base(family, expected):
    assert kserve.openai_base("http://m-predictor.ns.svc.cluster.local/", family) == expected


def test_openai_base_without_address():
    assert kserve.openai_base(None, "vllm") is None


def test_readiness_reason():
    assert kserve.ready_condition(inference_service("m", "ns", "vLLM", "x")) == (True, None)
    broken = inference_service("m", "ns", "vLLM", "x", ready=False, reason="RevisionFailed", message="image pull")
    assert kserve.ready_condition(broken) == (False, "Ready RevisionFailed: image pull")
    fresh = inference_service("m", "ns", "vLLM", "x")
    fresh["status"] = {}
    assert kserve.ready_condition(fresh) == (False, "no Ready condition yet")


def test_runtime_is_found_by_format_when_not_named():
    isvc = inference_service("m", "ns", "sbert", "x")
    del isvc["spec"]["predictor"]["model"]["runtime"]
    assert kserve.runtime_of(isvc, [vllm_runtime("ns"), tei_runtime("ns")])["metadata"]["name"] == "tei-gpu"


@pytest.mark.parametrize("kind,family,apis,tokenize,bridged", [
    ("chat", "vllm", True, True, False),  # vLLM serves /v1/responses, /v1/messages and /tokenize itself
    ("chat", "ovms", True, False, True),  # the proxy translates both APIs to chat completions
    ("chat", "other", True, False, True),
    ("embeddings", "tei", False, False, False),
])
def test_proxy_model_says_which_apis_a_model_offers(kind, family, apis, tokenize, bridged):
    info = {"kind": kind, "runtime_family": family, "model_name": "m", "served_model_name": "m", "api_base": "http://m/v1",
            "namespace": "ns", "name": "m", "auth": False}
    model = kserve.proxy_model(info)
    flags = model["model_info"]
    assert (flags["supports_responses_api"], flags["supports_messages_api"], flags["supports_tokenize"]) == (apis, apis, tokenize)
    translated = {"responses_api": "chat", "messages_api": "chat"} if bridged else {}
    assert model["litellm_params"] == {"custom_llm_provider": "openai", **translated}

"""KServe model serving on the in-memory API (tests/support/fake_k8s.py): the litemaas_model_serving role applies
runtimes and InferenceServices and prunes; inference_service_info discovers InferenceServices shaped as KServe reports
them; the models role registers them in the real proxy, a chat reaches the model server behind them, and a removed
InferenceService is removed. (Render mode: test_model_serving.py; two files so that both test workers take a part.)"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import yaml

from tests.playbooks.conftest import recap
from tests.playbooks.test_model_serving import ALL_KINDS
from tests.support.kserve_objects import docling_runtime, inference_service, status, tei_runtime, vllm_runtime


@pytest.fixture()
def fake_cluster(tmp_path):
    from tests.support.fake_k8s import FakeKubernetes

    fake = FakeKubernetes().start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(fake.kubeconfig()))
    yield fake, kubeconfig
    fake.stop()


def _put(fake, obj):
    """Create obj (and its namespace) as another client would, then its status as its controller (KServe) reports it."""
    resource = {"InferenceService": "inferenceservices", "ServingRuntime": "servingruntimes", "Secret": "secrets"}[obj["kind"]]
    namespace = obj["metadata"]["namespace"]
    if namespace not in fake.names("namespaces", ""):
        fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    fake.add({k: v for k, v in obj.items() if k != "status"})
    if obj.get("status"):
        fake.set_status(resource, namespace, obj["metadata"]["name"], obj["status"])


def test_cluster_mode_applies_runtimes_and_inference_services_and_prunes(playbook, fake_cluster):
    fake, kubeconfig = fake_cluster
    base = {"litemaas_model_serving_k8s_kubeconfig": str(kubeconfig), "litemaas_model_serving_wait_timeout": 5}
    fake.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "llm-hosting"}})
    playbook.run("model_serving.yml", dict(base, litemaas_model_serving_models=ALL_KINDS[3:5], litemaas_model_serving_wait=False))
    assert fake.names("servingruntimes", "llm-hosting") == ["docling-serve-v1.14.3", "tei-gpu"]
    assert fake.names("inferenceservices", "llm-hosting") == ["granite-docling-258m", "nomic-embed-text-v1-5"]
    patches = {r["path"] for r in fake.requests if r["method"] == "PATCH"}
    assert "/apis/serving.kserve.io/v1beta1/namespaces/llm-hosting/inferenceservices/nomic-embed-text-v1-5" in patches
    # KServe reports them Ready: the wait passes. One model fewer: its InferenceService and runtime are pruned.
    for name in ("nomic-embed-text-v1-5", "granite-docling-258m"):
        fake.set_status("inferenceservices", "llm-hosting", name, status(name, "llm-hosting"))
    proc = playbook.run("model_serving.yml", dict(base, litemaas_model_serving_models=ALL_KINDS[3:4]))
    assert "Wait until every InferenceService is Ready" in proc.stdout and recap(proc.stdout)["failed"] == 0
    assert fake.names("inferenceservices", "llm-hosting") == ["nomic-embed-text-v1-5"]
    assert fake.names("servingruntimes", "llm-hosting") == ["tei-gpu"]
    # A model that never becomes Ready fails the run once the wait times out.
    failed = playbook.run("model_serving.yml", dict(base, litemaas_model_serving_models=ALL_KINDS[3:5]), expect_rc=2)
    assert "granite-docling-258m" in failed.stdout and recap(failed.stdout)["failed"] == 1
    playbook.run("model_serving.yml", dict(base, litemaas_model_serving_state="absent", litemaas_model_serving_models=ALL_KINDS[3:4]))
    assert fake.names("inferenceservices", "llm-hosting") == [] and fake.names("servingruntimes", "llm-hosting") == []


def _discovery_objects(ns, address_for=None):
    address_for = address_for or (lambda name: None)
    return [
        vllm_runtime(ns), tei_runtime(ns), docling_runtime(ns),
        inference_service("granite-3-2-8b-instruct", ns, "vLLM", "vllm-runtime", address=address_for("granite-3-2-8b-instruct"),
                          args=["--max-model-len=8192", "--enable-auto-tool-choice", "--tool-call-parser=granite"],
                          url=f"https://granite-3-2-8b-instruct-{ns}.apps.example.com"),
        inference_service("llama-guard-3-1b", ns, "vLLM", "vllm-runtime", address=address_for("llama-guard-3-1b"),
                          args=["--served-model-name=meta-llama/Llama-Guard-3-1B"],
                          annotations={"security.opendatahub.io/enable-auth": "true"}),
        inference_service("nomic-embed-text-v1-5", ns, "sbert", "tei-gpu", address=address_for("nomic-embed-text-v1-5")),
        inference_service("granite-docling-258m", ns, "Docling", "docling-serve-v1.14.3", address=address_for("granite-docling-258m")),
        inference_service("codellama-7b-instruct", ns, "vLLM", "vllm-runtime", ready=False, reason="ProgressDeadlineExceeded",
                          message="ReplicaSet has timed out progressing."),
    ]


def _discover_play(tmp_path, kubeconfig, out, **options):
    play = [{"name": "discover", "hosts": "localhost", "gather_facts": False,
             "module_defaults": {"group/rhpds.litemaas.k8s": {"kubeconfig": str(kubeconfig)}},
             "tasks": [{"name": "Discover", "rhpds.litemaas.inference_service_info": options, "register": "found"},
                       {"name": "Keep", "ansible.builtin.copy": {"content": "{{ found | to_json }}", "dest": str(out)}}]}]
    path = tmp_path / f"discover-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(json.dumps(play))
    return path


def test_discovery_describes_each_inference_service(playbook, fake_cluster, tmp_path):
    fake, kubeconfig = fake_cluster
    for obj in _discovery_objects("llm-hosting"):
        _put(fake, obj)
    out = tmp_path / "found.json"
    playbook.run_file(_discover_play(tmp_path, kubeconfig, out, namespaces=["llm-hosting"], label_selector="opendatahub.io/dashboard=true",
                                     model_info={"granite-3-2-8b-instruct": {"input_cost_per_token": 2e-7}}))
    found = json.loads(out.read_text())
    assert found["changed"] is False
    by_name = {i["name"]: i for i in found["inference_services"]}
    assert [i["name"] for i in found["inference_services"]] == sorted(by_name)
    svc = "svc.cluster.local"
    assert by_name["granite-3-2-8b-instruct"] == {
        "name": "granite-3-2-8b-instruct", "namespace": "llm-hosting", "display_name": "granite-3-2-8b-instruct",
        "model_name": "granite-3-2-8b-instruct", "served_model_name": "granite-3-2-8b-instruct", "kind": "chat",
        "runtime": "vllm-runtime", "runtime_family": "vllm", "model_format": "vLLM", "ready": True, "reason": None, "auth": False,
        "url": f"http://granite-3-2-8b-instruct-predictor.llm-hosting.{svc}",
        "external_url": "https://granite-3-2-8b-instruct-llm-hosting.apps.example.com",
        "api_base": f"http://granite-3-2-8b-instruct-predictor.llm-hosting.{svc}/v1", "tool_calling": True, "max_model_len": 8192}
    guard = by_name["llama-guard-3-1b"]
    assert (guard["served_model_name"], guard["model_name"], guard["auth"], guard["external_url"]) == (
        "meta-llama/Llama-Guard-3-1B", "llama-guard-3-1b", True, None)
    nomic = by_name["nomic-embed-text-v1-5"]
    assert (nomic["kind"], nomic["runtime_family"], nomic["api_base"]) == ("embeddings", "tei", f"http://nomic-embed-text-v1-5-predictor.llm-hosting.{svc}/v1")
    docling = by_name["granite-docling-258m"]
    assert (docling["kind"], docling["api_base"]) == ("docling", f"http://granite-docling-258m-predictor.llm-hosting.{svc}")
    broken = by_name["codellama-7b-instruct"]
    assert (broken["ready"], broken["reason"]) == (False, "Ready ProgressDeadlineExceeded: ReplicaSet has timed out progressing.")
    assert found["not_ready"] == ["llm-hosting/codellama-7b-instruct"]
    assert found["model_names"] == ["granite-3-2-8b-instruct", "granite-docling-258m", "llama-guard-3-1b", "nomic-embed-text-v1-5"]
    models = {m["model_name"]: m for m in found["models"]}
    assert models["granite-3-2-8b-instruct"] == {
        "model_name": "granite-3-2-8b-instruct", "model": "openai/granite-3-2-8b-instruct",
        "api_base": f"http://granite-3-2-8b-instruct-predictor.llm-hosting.{svc}/v1", "litellm_params": {"custom_llm_provider": "openai"},
        "model_info": {"mode": "chat", "supports_embeddings": False, "supports_convert": False, "supports_vision": False,
                       "supports_function_calling": True, "supports_tool_choice": True, "supports_parallel_function_calling": False,
                       "supports_tokenize": True, "supports_responses_api": True, "supports_messages_api": True,
                       "litemaas_source": "kserve", "litemaas_inference_service": "llm-hosting/granite-3-2-8b-instruct",
                       "max_tokens": 8192, "input_cost_per_token": 2e-7},
        "namespace": "llm-hosting", "auth": False}
    assert models["llama-guard-3-1b"]["model"] == "openai/meta-llama/Llama-Guard-3-1B"
    assert (models["nomic-embed-text-v1-5"]["model_info"]["mode"], models["nomic-embed-text-v1-5"]["model_info"]["supports_embeddings"]) == ("embedding", True)
    assert models["nomic-embed-text-v1-5"]["model_info"]["supports_responses_api"] is False
    assert models["nomic-embed-text-v1-5"]["litellm_params"] == {"custom_llm_provider": "openai"}
    assert models["granite-docling-258m"]["model"] == "docling/granite-docling-258m"
    assert models["granite-docling-258m"]["litellm_params"] == {"custom_llm_provider": "docling"}
    assert models["granite-docling-258m"]["model_info"]["supports_convert"] is True


def test_discovery_of_a_namespace_that_cannot_be_read_fails_with_the_call(playbook, fake_cluster, tmp_path):
    fake, kubeconfig = fake_cluster
    fake.stop()
    proc = playbook.run_file(_discover_play(tmp_path, kubeconfig, tmp_path / "x.json", namespaces=["llm-hosting"]), expect_rc=2)
    assert "GET /apis/serving.kserve.io/v1beta1/namespaces/llm-hosting/inferenceservices" in proc.stdout
    proc = playbook.run_file(_discover_play(tmp_path, kubeconfig, tmp_path / "x.json", namespaces=[""]), expect_rc=2)
    assert "namespaces must name at least one namespace, and no empty name" in proc.stdout


def _deployments(proxy, names):
    status_code, body = proxy.admin("GET", "/model/info")
    assert status_code == 200
    return sorted((m["model_name"], m["litellm_params"]["model"], m["litellm_params"].get("api_base")) for m in body["data"] if m["model_name"] in names)


def test_discovered_models_are_registered_served_and_removed(playbook, proxy, stub_upstream, fake_cluster):
    """The predictors' in-cluster addresses point at the stub model server (the stand-in for the predictor Service)."""
    fake, kubeconfig = fake_cluster
    ns_a, ns_b = "llm-" + uuid.uuid4().hex[:6], "llm-" + uuid.uuid4().hex[:6]
    base = stub_upstream.base_url
    for obj in _discovery_objects(ns_a, lambda name: base):
        _put(fake, obj)
    # The same public model in a second namespace (another predictor address): one model, two deployments.
    second_base = base.replace("127.0.0.1", "localhost")
    twin = inference_service("granite-b", ns_b, "vLLM", "vllm-runtime", address=second_base,
                             annotations={"litemaas.rhpds.io/model-name": "granite-3-2-8b-instruct"},
                             args=["--served-model-name=granite-3-2-8b-instruct"])
    for obj in (vllm_runtime(ns_b), twin):
        _put(fake, obj)
    # The model client's ServiceAccount and its token Secret, which the tokens controller fills.
    fake.add({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "litemaas-model-client", "namespace": ns_a}})
    _put(fake, {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                "metadata": {"name": "litemaas-model-client-token", "namespace": ns_a,
                             "annotations": {"kubernetes.io/service-account.name": "litemaas-model-client"}}})
    names = ["granite-3-2-8b-instruct", "llama-guard-3-1b", "nomic-embed-text-v1-5", "granite-docling-258m", "codellama-7b-instruct"]
    conn = {"litemaas_proxy_url": proxy.url, "litemaas_master_key": proxy.master_key, "litemaas_models_portal_sync": "never",
            "litemaas_models_discover": True, "litemaas_models_discover_namespaces": [ns_a, ns_b],
            "litemaas_models_discover_k8s_kubeconfig": str(kubeconfig)}
    first = playbook.run("models.yml", conn)
    assert recap(first.stdout)["changed"] == 1  # the one task that registers the five deployments
    assert _deployments(proxy, names) == [
        ("granite-3-2-8b-instruct", "openai/granite-3-2-8b-instruct", base + "/v1"),
        ("granite-3-2-8b-instruct", "openai/granite-3-2-8b-instruct", second_base + "/v1"),
        ("granite-docling-258m", "docling/granite-docling-258m", base),
        ("llama-guard-3-1b", "openai/meta-llama/Llama-Guard-3-1B", base + "/v1"),
        ("nomic-embed-text-v1-5", "openai/nomic-embed-text-v1-5", base + "/v1"),
    ]
    token = base64.b64decode(fake.objects[("secrets", ns_a, "litemaas-model-client-token")]["data"]["token"]).decode()
    assert token not in first.stdout and "(not ready: " + ns_a + "/codellama-7b-instruct)" in first.stdout

    again = playbook.run("models.yml", conn)
    assert recap(again.stdout)["changed"] == 0

    auth = {"Authorization": f"Bearer {proxy.master_key}"}
    code, body, dummy = proxy.request("POST", "/v1/chat/completions", {"model": "granite-3-2-8b-instruct", "messages": [{"role": "user", "content": "hi"}]},
                                      headers=auth)
    assert code == 200, body
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    code, body, dummy = proxy.request("POST", "/v1/embeddings", {"model": "nomic-embed-text-v1-5", "input": "hello"}, headers=auth)
    assert code == 200, body
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding"

    # Check mode predicts the removal of a deleted InferenceService and removes nothing.
    fake.delete("inferenceservices", ns_b, "granite-b")
    check = playbook.run("models.yml", conn, check=True)
    assert recap(check.stdout)["changed"] == 1
    assert len(_deployments(proxy, names)) == 5
    gone = playbook.run("models.yml", conn)
    assert recap(gone.stdout)["changed"] == 1
    assert _deployments(proxy, ["granite-3-2-8b-instruct"]) == [("granite-3-2-8b-instruct", "openai/granite-3-2-8b-instruct", base + "/v1")]

    # Not ready: left by default, removed with litemaas_models_discover_stale=remove.
    fake.set_status("inferenceservices", ns_a, "llama-guard-3-1b", status("llama-guard-3-1b", ns_a, address=base, ready=False))
    playbook.run("models.yml", conn)
    assert len(_deployments(proxy, ["llama-guard-3-1b"])) == 1
    playbook.run("models.yml", dict(conn, litemaas_models_discover_stale="remove"))
    assert _deployments(proxy, ["llama-guard-3-1b"]) == []
    for key in [k for k in fake.objects if k[1] in (ns_a, ns_b) and k[0] == "inferenceservices"]:
        fake.delete(*key)
    playbook.run("models.yml", conn)
    assert _deployments(proxy, names) == []


def test_discovered_model_under_auth_without_token_fails_clearly(playbook, proxy, fake_cluster):
    fake, kubeconfig = fake_cluster
    ns = "llm-" + uuid.uuid4().hex[:6]
    for obj in (vllm_runtime(ns), inference_service("guarded", ns, "vLLM", "vllm-runtime", annotations={"security.opendatahub.io/enable-auth": "true"})):
        _put(fake, obj)
    proc = playbook.run("models.yml", {"litemaas_proxy_url": proxy.url, "litemaas_master_key": proxy.master_key, "litemaas_models_portal_sync": "never",
                                       "litemaas_models_discover": True, "litemaas_models_discover_namespaces": [ns],
                                       "litemaas_models_discover_k8s_kubeconfig": str(kubeconfig)}, expect_rc=2)
    assert f"No token in Secret litemaas-model-client-token (key token) of {ns}" in proc.stdout
    assert _deployments(proxy, ["guarded"]) == []

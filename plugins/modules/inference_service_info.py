#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE), a license compatible with the GNU General Public License version 3

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: inference_service_info
short_description: Discover KServe InferenceServices and describe them as LiteMaaS proxy models
version_added: 0.2.0
description:
  - Lists the KServe C(InferenceService) objects (C(serving.kserve.io/v1beta1)) of the given namespaces and returns,
    for each, its readiness, URLs, served model name, kind and whether token auth is on.
  - The B(served model name) (the C(model) the model server answers to) is C(--served-model-name) of the predictor's
    C(spec.predictor.model.args), else of the ServingRuntime's container args with C({{.Name}}) resolved to the
    InferenceService name (as KServe does), else the InferenceService name.
  - The B(kind) is C(chat), C(embeddings) or C(docling) - the annotation C(litemaas.rhpds.io/kind) when set, else from
    the model format and the runtime (C(sbert) and text-embeddings-inference are embeddings, C(Docling) and
    docling-serve are docling, everything else is chat).
  - The B(OpenAI base URL) is C(status.address.url) plus the runtime's API path. In RawDeployment mode that URL is
    C(http://<name>-predictor.<namespace>.svc.cluster.local) - no port (the predictor Service listens on 80 and forwards
    to the container port, 8080 or docling's 5001) and no C(/v1) (KServe does not know the runtime's API path) - so
    C(/v1) is added for vLLM and text-embeddings-inference, C(/v3) for OpenVINO model server, nothing for docling-serve
    (the proxy's C(/docling) pass-through appends C(/v1/convert/...)).
  - The B(public model name) is the annotation C(litemaas.rhpds.io/model-name) when set, else the InferenceService
    name. InferenceServices that share a public name become one proxy model with several deployments.
  - RV(models) holds every ready InferenceService with an address as the options of M(rhpds.litemaas.model), with the
    fields the LiteMaaS portal reads and the marker C(model_info.litemaas_source=kserve).
author:
  - rhpds.litemaas maintainers (@rhpds)
extends_documentation_fragment:
  - rhpds.litemaas.k8s_api
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes.
options:
  namespaces:
    description: Namespaces to look in.
    type: list
    elements: str
    default: [llm-hosting]
  label_selector:
    description: Only InferenceServices matching this label selector, for example C(opendatahub.io/dashboard=true).
    type: str
    default: ""
  name:
    description: Only the InferenceService of this name.
    type: str
  model_info:
    description:
      - Extra C(model_info) (prices, C(max_tokens), capabilities) per public model name, merged over what is discovered.
      - 'For example C({"granite-3-2-8b-instruct": {"input_cost_per_token": 0.0000002}}).'
    type: dict
    default: {}
  probe:
    description:
      - Also call C(GET {api_base}/models) (docling - C(GET {url}/health)) of each ready InferenceService and report
        the answer in RV(inference_services[].probe). In-cluster URLs answer only from inside the cluster; a probe that
        fails is reported, never fatal.
    type: bool
    default: false
  probe_timeout:
    description: Seconds to wait for each probe.
    type: float
    default: 5
notes:
  - Talks to the Kubernetes API, not to the proxy; belongs to the C(rhpds.litemaas.k8s) action group, which also holds
    kubernetes.core's modules, so one C(module_defaults) block gives both the cluster credentials.
  - The role rhpds.litemaas.litemaas_model_serving deploys InferenceServices; the role rhpds.litemaas.litemaas_models
    registers what this module finds (C(litemaas_models_discover)).
  - Needs get/list on C(inferenceservices) and C(servingruntimes) in the namespaces (a runtime that cannot be read only
    loses the runtime-args fallback of the served model name).
seealso:
  - module: rhpds.litemaas.model
"""

EXAMPLES = r"""
- name: Discover the models served in llm-hosting
  rhpds.litemaas.inference_service_info:
    namespaces: [llm-hosting]
    label_selector: opendatahub.io/dashboard=true
  register: served

- name: Names of the models that are not ready, and why
  ansible.builtin.debug:
    msg: "{{ served.inference_services | rejectattr('ready') | map(attribute='reason') | list }}"

- name: Register every ready one in the proxy
  rhpds.litemaas.model:
    model_name: "{{ item.model_name }}"
    model: "{{ item.model }}"
    api_base: "{{ item.api_base }}"
    litellm_params: "{{ item.litellm_params }}"
    model_info: "{{ item.model_info }}"
  loop: "{{ served.models }}"
  loop_control:
    label: "{{ item.model_name }} at {{ item.api_base }}"
"""

RETURN = r"""
inference_services:
  description: Every InferenceService found, sorted by namespace and name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: C(metadata.name).
      type: str
    namespace:
      description: C(metadata.namespace).
      type: str
    display_name:
      description: The annotation C(openshift.io/display-name), else the name.
      type: str
    model_name:
      description: Public model name in the proxy (annotation C(litemaas.rhpds.io/model-name), else the name).
      type: str
    served_model_name:
      description: The name the model server answers to (see the description).
      type: str
    kind:
      description: C(chat), C(embeddings) or C(docling).
      type: str
    runtime:
      description: Name of the ServingRuntime.
      type: str
    runtime_family:
      description: C(vllm), C(tei), C(docling), C(ovms) or C(other).
      type: str
    model_format:
      description: C(spec.predictor.model.modelFormat.name).
      type: str
    ready:
      description: Whether the C(Ready) condition is C(True).
      type: bool
    reason:
      description: When not ready, the first false condition with its reason and message; else null.
      type: str
    auth:
      description: Whether token auth is on (annotation C(security.opendatahub.io/enable-auth=true)).
      type: bool
    url:
      description: C(status.address.url), the in-cluster URL (no port, no API path).
      type: str
    external_url:
      description: C(status.url) when it differs from the in-cluster URL (the model is exposed), else null.
      type: str
    api_base:
      description: The OpenAI base URL the proxy uses (see the description); null without an address.
      type: str
    tool_calling:
      description: Whether the model server runs with C(--enable-auto-tool-choice).
      type: bool
    max_model_len:
      description: C(--max-model-len) of the runtime or predictor args, else null.
      type: int
    probe:
      description: With O(probe=true) - C(ok), C(status), C(models) (ids answered by C(/models)) or C(error).
      type: dict
      returned: when O(probe=true) and the InferenceService is ready
models:
  description:
    - The ready InferenceServices with an address, as options of M(rhpds.litemaas.model) (C(model_name), C(model),
      C(api_base), C(litellm_params), C(model_info)), plus C(namespace) and C(auth) to find the token.
  returned: always
  type: list
  elements: dict
model_names:
  description: Distinct public names of RV(models), sorted.
  returned: always
  type: list
  elements: str
not_ready:
  description: C(<namespace>/<name>) of the InferenceServices that are not ready (or have no address yet).
  returned: always
  type: list
  elements: str
"""

import json

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.urls import open_url
from ansible_collections.rhpds.litemaas.plugins.module_utils.common import compose_argspec
from ansible_collections.rhpds.litemaas.plugins.module_utils.kserve import (
    HAS_KUBERNETES,
    K8S_API_ARGSPEC,
    KUBERNETES_IMPORT_ERROR,
    KServeClient,
    KServeError,
    describe,
    proxy_model,
)


def argument_spec():
    return compose_argspec(
        K8S_API_ARGSPEC,
        namespaces=dict(type="list", elements="str", default=["llm-hosting"]),
        label_selector=dict(type="str", default=""),
        name=dict(type="str"),
        model_info=dict(type="dict", default={}),
        probe=dict(type="bool", default=False),
        probe_timeout=dict(type="float", default=5),
    )


def probe(info, timeout):
    url = (info["url"].rstrip("/") + "/health") if info["kind"] == "docling" else info["api_base"].rstrip("/") + "/models"
    try:
        resp = open_url(url, method="GET", timeout=timeout, validate_certs=False)
        body = resp.read()
    except Exception as exc:  # HTTPError, URLError, timeouts: reported, never fatal
        return {"ok": False, "url": url, "status": getattr(exc, "code", None), "error": str(exc)}
    out = {"ok": True, "url": url, "status": resp.getcode()}
    if info["kind"] != "docling":
        try:
            out["models"] = [m.get("id") for m in json.loads(body).get("data") or []]
        except (ValueError, AttributeError):
            out.update(ok=False, error="the answer is not an OpenAI model list")
    return out


def discover(client, params):
    found = []
    for namespace in params["namespaces"]:
        items = client.list_inference_services(namespace, params["label_selector"])
        if params["name"]:
            items = [i for i in items if i["metadata"]["name"] == params["name"]]
        runtimes = client.list_serving_runtimes(namespace) if items else []
        found.extend(describe(item, runtimes) for item in items)
    found.sort(key=lambda i: (i["namespace"] or "", i["name"]))
    overrides = params["model_info"] or {}
    models, not_ready = [], []
    for info in found:
        if info["ready"] and info["api_base"]:
            models.append(proxy_model(info, overrides.get(info["model_name"])))
            if params["probe"]:
                info["probe"] = probe(info, params["probe_timeout"])
        else:
            not_ready.append("%s/%s" % (info["namespace"], info["name"]))
    return {"inference_services": found, "models": models, "model_names": sorted(set(m["model_name"] for m in models)), "not_ready": not_ready}


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=str(KUBERNETES_IMPORT_ERROR))
    bad = [n for n in module.params["namespaces"] if not n]
    if bad or not module.params["namespaces"]:
        module.fail_json(msg="namespaces must name at least one namespace, and no empty name")
    try:
        result = discover(KServeClient.from_params(module.params), module.params)
    except KServeError as exc:
        module.fail_json(msg=str(exc))
    n = len(result["inference_services"])
    result["msg"] = "%d InferenceService(s) in %s, %d ready" % (n, ", ".join(module.params["namespaces"]), len(result["models"]))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()

# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Kubernetes connection options (module_utils/kserve.py K8S_API_ARGSPEC); the names of kubernetes.core's, so one
    # module_defaults block for group/rhpds.litemaas.k8s serves both.
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file. Without it (and without O(host)), E(KUBECONFIG) or C(~/.kube/config) is read, and
        inside a pod the pod's ServiceAccount is used.
      - If not set, the value of E(K8S_AUTH_KUBECONFIG) is used.
    type: path
  context:
    description:
      - The kubeconfig context to use.
      - If not set, the value of E(K8S_AUTH_CONTEXT) is used.
    type: str
  host:
    description:
      - URL of the API server; with it, the kubeconfig is not read.
      - If not set, the value of E(K8S_AUTH_HOST) is used.
    type: str
  api_key:
    description:
      - Bearer token for O(host).
      - If not set, the value of E(K8S_AUTH_API_KEY) is used.
    type: str
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate (default - as the kubeconfig says, else true).
      - If not set, the value of E(K8S_AUTH_VERIFY_SSL) is used.
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - PEM file of the CA that signed the API server's certificate.
      - If not set, the value of E(K8S_AUTH_SSL_CA_CERT) is used.
    type: path
    aliases: [ssl_ca_cert]
requirements:
  - kubernetes (Python library) >= 24.2.0
"""

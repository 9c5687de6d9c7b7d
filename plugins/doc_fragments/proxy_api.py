# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options of the proxy's management API (module_utils/proxy_api.py PROXY_API_ARGSPEC).
    DOCUMENTATION = r"""
options:
  api_url:
    description:
      - Base URL of the proxy (our proxy or a LiteLLM proxy), for example C(https://litellm.apps.example.com).
      - If not set, the value of the E(LITEMAAS_PROXY_URL) environment variable is used.
    type: str
    required: true
    aliases: [proxy_url, litellm_url]
  api_key:
    description:
      - The proxy's master key, sent as a bearer token in the C(Authorization) header.
      - If not set, the value of E(LITEMAAS_MASTER_KEY) (or E(LITELLM_MASTER_KEY)) is used.
    type: str
    required: true
    aliases: [master_key, litellm_master_key]
  validate_certs:
    description:
      - Whether to verify the proxy's TLS certificate.
      - If not set, the value of E(LITEMAAS_VALIDATE_CERTS) is used.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the proxy's certificate.
      - If not set, the value of E(LITEMAAS_CA_PATH) is used.
    type: path
  request_timeout:
    description:
      - Seconds to wait for each HTTP response.
      - Reads, and calls answered with HTTP 429 or 503, are retried a few times with backoff within a bounded time;
        a write whose outcome is unknown is never sent twice.
      - If not set, the value of E(LITEMAAS_REQUEST_TIMEOUT) is used.
    type: float
    default: 30
"""

# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)
"""Small helpers shared by the modules: building argspecs, known model names, returning secrets."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy


def compose_argspec(*specs, **extra):
    """``deepcopy`` each shared argspec and ``update`` them with the module's own options."""
    out = {}
    for spec in specs:
        out.update(copy.deepcopy(spec))
    out.update(extra)
    return out


def known_model_names(models):
    """Model names and access groups served by the proxy, from ``/model/info`` entries."""
    names = set()
    for entry in models:
        if entry.get("model_name"):
            names.add(entry["model_name"])
        for group in (entry.get("model_info") or {}).get("access_groups") or []:
            names.add(group)
    return names


def exit_with_secrets(module, has_secret, **result):
    """Exit. The action plugin of the same name (plugins/action/) hides the displayed result when it carries
    a new secret; the registered variable keeps it. (A module cannot set ``_ansible_no_log`` itself, and adding
    the secret to ``no_log_values`` would strip it from the result.)"""
    module.exit_json(**result)

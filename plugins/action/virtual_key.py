# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)
"""Runs the module of the same name and hides the task's displayed result when it carries a new secret.

A module cannot mark its own result as ``no_log`` (Ansible strips ``_ansible_no_log`` from module returns),
and adding the secret to ``no_log_values`` would blank it in the registered variable too. This action
sets ``_ansible_no_log`` on the result instead: callbacks, at any verbosity, show it censored, while the
registered variable still holds the secret.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase


def carries_secret(result):
    if result.get("key"):
        return True
    items = result.get("virtual_keys")
    return isinstance(items, list) and any(isinstance(item, dict) and item.get("key") for item in items)


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        wrap_async = self._task.async_val and not self._connection.has_native_async
        result.update(self._execute_module(module_name=self._task.action, task_vars=task_vars, wrap_async=wrap_async))
        if carries_secret(result):
            result["_ansible_no_log"] = True
        return result

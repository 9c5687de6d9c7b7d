# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja test: can a task call this action (an action plugin or a module) by this name?"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from importlib.util import find_spec

from ansible.errors import AnsibleError
from ansible.plugins.loader import action_loader, module_loader


def _collection_present(name):
    """False when ``name`` is the FQCN of a collection that is not installed (so the loaders print no warning)."""
    parts = name.split(".")
    if len(parts) < 3 or parts[0] == "ansible":
        return True
    try:
        return find_spec(f"ansible_collections.{parts[0]}.{parts[1]}") is not None
    except ImportError:
        return False


def _resolves(loader, name):
    try:
        return bool(loader.find_plugin_with_context(name).resolved)
    except (AnsibleError, ImportError, ValueError):
        return False


def action_available(name):
    """True when ``name`` (a FQCN, ``ansible.legacy.<name>`` or a bare name) resolves to an action plugin or a module.

    Asks Ansible's own plugin loaders, so every place Ansible looks is covered: collections installed with
    ansible-galaxy or checked out in a collections path, the action plugin path, and action_plugins next to the playbook.
    """
    if not isinstance(name, str) or not name:
        raise AnsibleError(f"action_available needs the name of an action as a string, got {name!r}")
    if not _collection_present(name):
        return False
    return _resolves(action_loader, name) or _resolves(module_loader, name)


class TestModule(object):
    def tests(self):
        return {"action_available": action_available}

# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)
"""Same as the virtual_key action: hide the displayed result when it carries new secrets."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.rhpds.litemaas.plugins.action.virtual_key import ActionModule  # noqa: F401  pylint: disable=unused-import

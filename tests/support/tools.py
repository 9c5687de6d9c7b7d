"""Command-line tools that some tests need, and what to do when one is missing.

``bash scripts/test.sh`` installs every such tool (``scripts/lib.sh``: ``ensure_os_packages``), so a missing tool
is a broken machine or a broken install step, never a reason to skip: the test fails and names the package.
"""

from __future__ import annotations

import shutil

import pytest


def require_tool(command: str, package: str) -> str:
    """The path of ``command``; the calling test fails (not skips) when it is not installed."""
    path = shutil.which(command)
    if path is None:
        pytest.fail(f"{command} is not installed: the Debian package {package} provides it "
                    "(bash scripts/test.sh installs it)", pytrace=False)
    return path

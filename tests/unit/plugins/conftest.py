"""Make this checkout importable as ``ansible_collections.rhpds.litemaas`` for the plugin unit tests."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
ROOT = REPO / ".work" / "unit-collections"
_link = ROOT / "ansible_collections" / "rhpds" / "litemaas"
if not _link.exists():
    _link.parent.mkdir(parents=True, exist_ok=True)
    try:
        _link.symlink_to(REPO, target_is_directory=True)
    except FileExistsError:
        pass
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

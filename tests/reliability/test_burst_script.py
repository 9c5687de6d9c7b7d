"""bench/burst.py's argument checks. Its documented command lines run end to end (every stream complete, the fields the
README table shows, the key lookups of a cold burst) in test_bench_doc_lines.py."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_burst_script_refuses_bad_arguments():
    res = subprocess.run([sys.executable, str(REPO / "bench" / "burst.py"), "--n", "0"], cwd=str(REPO), capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 2 and "--n" in res.stderr

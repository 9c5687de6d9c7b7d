"""bench/README.md's smoke run, as written: ``.venv/bin/python bench/run.py --quick`` (our proxy and LiteLLM 1.81.0
side by side, LiteLLM installed into its own venv on the first run). This tests the script and what it measures
(every request answered, the ratios printed, our key charged), not speed: the bars it prints may fail on a loaded
machine (exit status 1) and that is not a failure here; a request that got no answer is."""

from __future__ import annotations

import json
import os
import re

from tests.conftest import REPO
from tests.reliability.conftest import bench_results_lock
from tests.support.doc_commands import sh

QUICK = ".venv/bin/python bench/run.py --quick"


def test_quick_benchmark_runs_as_written_and_answers_every_request(tmp_path):
    results = REPO / ".work" / "bench" / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEMAAS_")}
    with bench_results_lock():  # the file the other run.py lines write too (test_bench_doc_lines.py)
        results.unlink(missing_ok=True)
        run = sh(QUICK, env, REPO, rc=None, timeout=1200)
        data = json.loads(results.read_text()) if results.is_file() else None
    assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout + run.stderr
    # The table: each target at each concurrency of --quick, with zero errors (the 8th column).
    rows = {(parts[0], parts[1]): parts for parts in (line.split() for line in out.splitlines()) if len(parts) >= 13}
    for target in ("direct", "ours", "litellm"):
        for conc in ("1", "16", "64"):
            assert rows.get((target, conc), [""] * 8)[7] == "0", (target, conc, out[-4000:])
    assert re.search(r"^\s+16\s+[\d.]+x\s+[\d.]+x\s+[\d.]+x$", out, re.M), out[-3000:]
    assert "PASS  no_errors" in out
    assert data is not None, f"{results} was not written"
    assert data["scale"]["scaled"] is False and "SCALED RUN" not in out
    assert data["settings"]["duration_s"] == 3 and data["settings"]["concurrency"] == [1, 16, 64]
    assert sorted((r["target"], r["conc"]) for r in data["runs"]) == sorted((t, c) for t in ("direct", "ours", "litellm") for c in (1, 16, 64))
    for r in data["runs"]:
        assert r["requests"] > 0 and r["non_2xx"] == 0 and r["socket_errors"] == 0, r
    assert data["bars"]["no_errors"]["pass"] is True
    assert run.returncode == (0 if all(b["pass"] for b in data["bars"].values()) else 1)
    spend = re.search(r"our proxy: key spend after load = ([\d.e-]+) \(status 200\)", out)
    assert spend and float(spend.group(1)) > 0, out[-3000:]

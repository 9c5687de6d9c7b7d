"""bench/burst.py end to end with a tiny burst: it starts its own services, runs the stub alone and our proxy cold and
warm, and reports every stream as complete with the fields the README table shows. This tests the script, not speed."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_burst_script_reports_every_stream_and_the_key_lookups(tmp_path):
    out = tmp_path / "burst.json"
    res = subprocess.run([sys.executable, str(REPO / "bench" / "burst.py"), "--n", "30", "--workers", "1", "--skip-litellm", "--chunks", "3",
                          "--gap", "0.01", "--out", str(out)], cwd=str(REPO), capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(out.read_text())
    rows = {r["target"]: r for r in data["rows"]}
    assert set(rows) == {"stub alone", "ours 1w cold", "ours 1w warm"}
    for row in rows.values():
        assert row["n"] == 30 and row["ok"] == 30 and row["errors"] == {}, row
        assert row["ttft_p50"] is not None and row["ttft_p99"] >= row["ttft_p50"] and row["total_p99"] >= row["ttft_p99"]
        assert row["rss_peak_mb"] > 0 and row["cpu_s"] >= 0 and row["listen_overflows"] >= 0
    # The cold burst looked every key up in the database, once each.
    assert "N=30 ours 1w cold: 30 keys looked up in " in "\n".join(data["notes"])
    assert "stub alone" in res.stdout and "ours 1w warm" in res.stdout


def test_burst_script_refuses_bad_arguments():
    res = subprocess.run([sys.executable, str(REPO / "bench" / "burst.py"), "--n", "0"], cwd=str(REPO), capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 2 and "--n" in res.stderr

"""The benchmark command lines of bench/README.md, bench/KEYS.md and docs/reliability.md, each run exactly as written
from the repo root, with ``LITEMAAS_BENCH_SCALE`` set so that a line of 2 to 10 minutes takes seconds.

This tests what each line does, not speed: every request answered, the peers the line names in the table (LiteLLM
rows present, or absent with ``--skip-litellm``), the ratios, the option of the line visible in the output, spend
recorded to the token, keys created and a re-run changing nothing, and that a scaled run says it is one. A scaled
run judges no speed bar, so every line must exit 0.

Cost: the run.py lines and the burst.py line that measure LiteLLM 1.81.0 each start its proxy once (the script's own
start, about as long as the rest of such a scaled line); LiteLLM is installed once into .work/bench/litellm-venv by
whichever benchmark runs first (bench/run.py ``ensure_litellm``, under a lock).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from bench.scale import VARIABLE, BenchScale
from tests.conftest import REPO
from tests.reliability.conftest import bench_results_lock
from tests.support.doc_commands import documented_commands, sh

RUN_FULL = ".venv/bin/python bench/run.py"
RUN_SHORT = ".venv/bin/python bench/run.py --duration 20 --warmup 5 --conc 1,16"
RUN_STREAM = ".venv/bin/python bench/run.py --request stream"
RUN_ROUNDS = ".venv/bin/python bench/run.py --rounds 3"
RUN_OURS = ".venv/bin/python bench/run.py --skip-litellm"
BURST_FULL = ".venv/bin/python bench/burst.py"
BURST_KEEP = ".venv/bin/python bench/burst.py --n 500 --skip-litellm --keep"
LOAD = ".venv/bin/python bench/load.py"
LOAD_DEFAULTS = ".venv/bin/python bench/load.py --duration 60 --concurrency 32 --keys 200 --proxies 2"
LOAD_WORKERS = ".venv/bin/python bench/load.py --proxies 1 --workers 2"
KEYS = ".venv/bin/python bench/keys_bench.py --count 1000 --parallelism 16"

RESULTS = REPO / ".work" / "bench" / "results.json"
BURST_JSON = REPO / ".work" / "bench" / "burst.json"
TIMEOUT = 900  # a first run installs LiteLLM (a few minutes); a scaled line itself takes seconds


def env_with(scale) -> dict:
    """The caller's environment without the project's own settings, with the benchmark scale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEMAAS_")}
    env[VARIABLE] = str(scale)
    return env


def notice(scale) -> str:
    return f"SCALED RUN ({VARIABLE}={scale:g}): "


# ---------------------------------------------------------------- bench/run.py

def table(out: str) -> dict:
    """{(target, concurrency): columns} of run.py's table (13 columns: the 8th is the errors)."""
    return {(p[0], int(p[1])): p for p in (line.split() for line in out.splitlines()) if len(p) == 13 and p[1].isdigit()}


def ratio_rows(out: str) -> list:
    """Concurrencies of the ours/LiteLLM ratio table (three ratios each)."""
    return [int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s+[\d,.]+x\s+[\d,.]+x\s+[\d,.]+x$", out, re.M)]


def run_bench(key: str, scale: float) -> tuple:
    """Run a run.py line as written; (stdout + stderr, the JSON it wrote). Under a lock: the line writes the fixed
    .work/bench/results.json, as test_bench_doc.py's line does."""
    with bench_results_lock():
        RESULTS.unlink(missing_ok=True)
        run = sh(key, env_with(scale), REPO, timeout=TIMEOUT)
        data = json.loads(RESULTS.read_text())
    out = run.stdout + run.stderr
    assert run.stdout.startswith(notice(scale)), run.stdout[:500]
    assert data["scale"] == {"factor": scale, "scaled": True, "note": run.stdout.splitlines()[0],
                             "empty_runs_repeated": out.count("measuring it again")}
    return out, data


def check_matrix(out: str, data: dict, targets: tuple, concs: list, rounds: int = 1) -> None:
    """Every target at every concurrency in the table and the JSON, with requests and no error; the speed bars not
    judged (scaled), the error bar passed; our key charged for the load."""
    rows = table(out)
    assert sorted(rows) == sorted((t, c) for t in targets for c in concs), (sorted(rows), out[-3000:])
    assert all(r[7] == "0" for r in rows.values()), out[-3000:]
    assert sorted((r["target"], r["conc"]) for r in data["runs"]) == sorted((t, c) for t in targets for c in concs)
    assert len(data["all_runs"]) == len(targets) * len(concs) * rounds
    assert sorted({r["round"] for r in data["all_runs"]}) == list(range(1, rounds + 1))
    for r in data["all_runs"]:
        assert r["requests"] > 0 and r["non_2xx"] == 0 and r["socket_errors"] == 0, r
    assert data["settings"]["concurrency"] == concs and data["settings"]["rounds"] == rounds
    bars = data["bars"]
    assert bars["no_errors"]["pass"] is True and "PASS  no_errors" in out
    assert all(b["pass"] is None and b["note"] == "not judged: scaled run" for n, b in bars.items() if n != "no_errors"), bars
    assert len(re.findall(r"^\s+n/a\s+\w+.*not judged: scaled run$", out, re.M)) == len(bars) - 1, out[-2000:]
    spend = re.search(r"our proxy: key spend after load = ([\d.e-]+) \(status 200\)", out)
    assert spend and float(spend.group(1)) > 0 and data["processes"]["ours"]["key_spend_after_load"] == float(spend.group(1)), out[-2000:]


def check_litellm(out: str, data: dict, concs: list) -> None:
    """LiteLLM measured in the same run: its process figures, and the ratios ours/LiteLLM at each concurrency."""
    assert data["settings"]["litellm_version"] == "1.81.0" and data["processes"]["litellm"]["ready_s"] > 0
    assert ratio_rows(out) == concs, out[-3000:]
    assert re.search(r"^ratio\s+[\d.]+x\s+[\d.]+x\s+[\d.]+x\s+\(LiteLLM / ours\)$", out, re.M), out[-2000:]


def test_full_benchmark_line_measures_every_target_at_each_concurrency():
    out, data = run_bench(RUN_FULL, 0.1)
    # "c=1,16,64, 3 s warm-up + 10 s each": scaled to 1 s each, the warm-up of 0.3 s rounded to none.
    assert data["settings"]["requested"] == {"duration_s": 10.0, "warmup_s": 3.0}
    assert data["settings"]["duration_s"] == 1.0 and data["settings"]["warmup_s"] == 0.0
    assert all(" -d1s " in r["cmd"] for r in data["all_runs"])
    check_matrix(out, data, ("direct", "ours", "litellm"), [1, 16, 64])
    check_litellm(out, data, [1, 16, 64])
    assert data["settings"]["request_kind"] == "chat" and "bars (our proxy):" in out


def test_duration_warmup_and_concurrency_options_are_taken():
    out, data = run_bench(RUN_SHORT, 0.05)
    assert data["settings"]["requested"] == {"duration_s": 20.0, "warmup_s": 5.0}
    assert data["settings"]["duration_s"] == 1.0 and data["settings"]["warmup_s"] == 0.0  # 0.25 s rounds to none
    assert all(" -d1s " in r["cmd"] for r in data["all_runs"])
    check_matrix(out, data, ("direct", "ours", "litellm"), [1, 16])
    check_litellm(out, data, [1, 16])


def test_stream_request_line_drives_streaming_chats():
    out, data = run_bench(RUN_STREAM, 0.1)
    assert data["settings"]["request_kind"] == "stream"
    assert data["settings"]["request"] == {"path": "/v1/chat/completions",
                                           "body": {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}}
    assert "bars (our proxy; defined for --request chat, measured here with stream):" in out
    check_matrix(out, data, ("direct", "ours", "litellm"), [1, 16, 64])
    check_litellm(out, data, [1, 16, 64])


def test_rounds_line_repeats_the_matrix_and_shows_each_rows_median():
    out, data = run_bench(RUN_ROUNDS, 0.1)
    check_matrix(out, data, ("direct", "ours", "litellm"), [1, 16, 64], rounds=3)
    check_litellm(out, data, [1, 16, 64])
    for shown in data["runs"]:  # the table's run is the median of its three by req/s
        mine = sorted(r["rps"] for r in data["all_runs"] if (r["target"], r["conc"]) == (shown["target"], shown["conc"]))
        assert len(mine) == 3 and shown["rps"] == mine[1], (shown, mine)
    assert len(re.findall(r"\] round 3 (direct|ours|litellm) ", out)) == 9, out[-3000:]


def test_skip_litellm_line_measures_direct_and_ours_without_ratios():
    out, data = run_bench(RUN_OURS, 0.1)
    check_matrix(out, data, ("direct", "ours"), [1, 16, 64])
    assert "litellm" not in data["processes"] and data["settings"]["litellm_version"] is None
    assert ratio_rows(out) == [] and "LiteLLM / ours" not in out and "LiteLLM ready" not in out


# ---------------------------------------------------------------- bench/burst.py

def burst_rows(out: str) -> dict:
    """{(N, target): (ok, n, errors)} of burst.py's table."""
    found = {}
    for m in re.finditer(r"^\s*(\d+) (stub alone|ours \dw (?:cold|warm)|LiteLLM 1\.81\.0)\s+(\d+)/(\d+) .*  (\S.*)$", out, re.M):
        found[(int(m.group(1)), m.group(2))] = (int(m.group(3)), int(m.group(4)), m.group(5))
    return found


def check_burst(run, scale: float, sizes: list, litellm: bool) -> dict:
    out = run.stdout
    data = json.loads(BURST_JSON.read_text())
    assert out.startswith(notice(scale)) and data["scale"]["factor"] == scale and data["scale"]["scaled"] is True, out[:500]
    targets = ["stub alone", "ours 1w cold", "ours 1w warm", "ours 2w cold", "ours 2w warm"] + (["LiteLLM 1.81.0"] if litellm else [])
    rows = burst_rows(out)
    assert sorted(rows) == sorted((n, t) for n in sizes for t in targets), (sorted(rows), out[-3000:])
    for (n, target), (ok, total, errors) in rows.items():
        assert ok == total == n and errors == "none", (n, target, ok, total, errors)
    assert sorted((r["n"], r["target"]) for r in data["rows"]) == sorted(rows)
    for r in data["rows"]:
        assert r["ok"] == r["n"] and r["errors"] == {} and r["total_p99"] >= r["ttft_p99"] >= r["ttft_p50"] > 0, r
        assert r["rss_peak_mb"] >= r["rss_peak_one_mb"] > 0 and r["cpu_s"] >= 0 and r["client_cpu_s"] > 0 and r["listen_overflows"] >= 0, r
    assert data["args"]["n"] == sizes and data["args"]["workers"] == [1, 2]
    for n in sizes:  # the cold burst of one worker looked each key up in the database
        assert f"N={n} ours 1w cold: {n} keys looked up in " in out, out[-3000:]
    return data


def test_full_burst_line_runs_both_sizes_with_both_worker_counts_and_litellm():
    run = sh(BURST_FULL, env_with(0.02), REPO, timeout=TIMEOUT)
    data = check_burst(run, 0.02, [20, 40], litellm=True)
    # N=1000,2000 and 50 chunks 100 ms apart, as documented; scaled: 20 and 40 streams, 10 ms apart.
    assert data["args"]["requested"] == {"n": [1000, 2000], "gap": 0.1, "litellm_n": None}
    assert data["args"]["chunks"] == 50 and data["args"]["gap"] == 0.01
    assert "LiteLLM 1.81.0 runs without a database" in run.stdout


def test_small_burst_line_skips_litellm_and_keeps_its_work_directory():
    run = sh(BURST_KEEP, env_with(0.02), REPO, timeout=TIMEOUT)
    kept = re.search(r"\] kept (\S+)$", run.stderr, re.M)
    assert kept, run.stderr[-2000:]
    work = Path(kept.group(1))
    try:
        # --n 500 scaled by 0.02 is 10 streams: the minimum of a scaled burst, 20, holds.
        data = check_burst(run, 0.02, [20], litellm=False)
        assert data["args"]["requested"]["n"] == [500]
        assert "LiteLLM" not in run.stdout
        # The logs of every process the burst started are there.
        assert work.parent == REPO / ".work" and work.name.startswith("burst-"), work
        assert (work / "pg").is_dir() and (work / "stub.log").is_file()
        for name in ("keymaker", "ours-20-1", "ours-20-2"):
            assert (work / name / "proxy.log").stat().st_size > 0, name
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- bench/load.py (docs/reliability.md)

def check_load(run, scale: float, proxies: int, workers: int, keys: int) -> None:
    out = run.stdout
    assert out.startswith(notice(scale)), out[:500]
    assert f"{proxies} proxies of {workers} worker(s)" in out and f"creating {keys} keys" in out
    assert re.search(rf"^load: [\d.]+ s at concurrency 32 over {keys} keys and {proxies} proxies", out, re.M), out
    statuses = dict(re.findall(r"(\w+): (\d+)", re.search(r"^status counts\s+(.*)$", out, re.M).group(1)))
    # 200s, and 429s from the limited key; nothing else.
    assert set(statuses) == {"200", "429"} and int(statuses["200"]) > 0 and int(statuses["429"]) > 0, statuses
    client = re.search(r"^client usage\s+(\d+) successful requests, (\d+) prompt \+ (\d+) completion tokens, cost ([\d.]+)$", out, re.M)
    db = re.search(r"^recorded in DB\s+(\d+) spend log rows, (\d+) prompt \+ (\d+) completion tokens, key spend ([\d.]+) \(0 failure rows\)$", out, re.M)
    assert client and db, out
    assert client.groups() == db.groups() and int(client.group(1)) == int(statuses["200"]), out
    assert "spend check         equal, per key and in total, to the token" in out
    assert out.splitlines()[-1] == "PASS"


def test_load_line_runs_two_proxies_and_spend_matches_to_the_token():
    check_load(sh(LOAD, env_with(0.05), REPO, timeout=TIMEOUT), 0.05, proxies=2, workers=1, keys=10)


def test_load_line_with_the_defaults_written_out():
    check_load(sh(LOAD_DEFAULTS, env_with(0.05), REPO, timeout=TIMEOUT), 0.05, proxies=2, workers=1, keys=10)


def test_load_line_with_two_workers_of_one_proxy():
    check_load(sh(LOAD_WORKERS, env_with(0.05), REPO, timeout=TIMEOUT), 0.05, proxies=1, workers=2, keys=10)


# ---------------------------------------------------------------- bench/keys_bench.py (bench/KEYS.md)

def test_keys_line_creates_every_key_both_ways_and_the_rerun_changes_nothing():
    run = sh(KEYS, env_with(0.01), REPO, timeout=TIMEOUT)
    out = run.stdout
    assert out.startswith(notice(0.01)) and out.rstrip().splitlines()[-1].startswith(notice(0.01)), out
    assert "Creating 10 keys each way" in out
    assert "[PASS] (a) created all 10 keys" in out and "[PASS] (b) created all 10 keys" in out
    assert "[PASS] (a) re-run: changed=false, nothing created" in out
    assert re.search(r"^\(a\) re-run: [\d.]+ s, changed=False, counts=\{.*'unchanged': 10", out, re.M), out
    # The times are shown, not judged.
    assert re.search(r"^  \[n/a \] \(a\) one virtual_keys task < [\d.]+ s  \(not judged: scaled run\)$", out, re.M), out
    assert "[n/a ] (a) >= 20x faster than (b)  (not judged: scaled run)" in out
    assert "parallelism 16" in out and "[FAIL]" not in out


# ---------------------------------------------------------------- the variable itself

def test_a_bad_scale_stops_every_script_naming_the_variable():
    for key, value in ((RUN_OURS, "abc"), (BURST_KEEP, "0"), (LOAD, "-1"), (KEYS, "nan"), (RUN_FULL, "inf")):
        env = env_with(0.1)
        env[VARIABLE] = value
        run = sh(key, env, REPO, rc=2, timeout=60)
        assert f"{VARIABLE}={value!r}" in run.stderr and "greater than 0" in run.stderr, (key, run.stderr)
        assert "SCALED RUN" not in run.stdout + run.stderr and run.stdout == "", (key, run.stdout)


def test_scale_minimums_and_the_unscaled_default():
    full = BenchScale.from_env({})
    assert not full.scaled and full.seconds(10) == 10 and full.count(1000, 20) == 1000 and full.notice() == ""
    assert BenchScale.from_env({VARIABLE: "1"}).record() == {"factor": 1.0, "scaled": False, "note": None}
    small = BenchScale.from_env({VARIABLE: "0.001"})
    assert small.seconds(10, 1.0) == 1.0 and small.seconds(0.1, 0.01) == 0.01 and small.seconds(3, 0.0) == pytest.approx(0.003)
    assert small.count(2000, 20) == 20 and small.count(1000, 2) == 2
    assert small.count(5, 20) == 5 and small.seconds(0.5, 1.0) == 0.5  # never more than was asked
    big = BenchScale.from_env({VARIABLE: "2"})
    assert big.seconds(10) == 20 and big.count(500, 20) == 1000 and big.notice().startswith(notice(2))


def test_every_benchmark_line_of_the_docs_is_run_here():
    documented = {k for k in documented_commands() if re.match(r"\.venv/bin/python bench/", k)}
    here = {RUN_FULL, RUN_SHORT, RUN_STREAM, RUN_ROUNDS, RUN_OURS, BURST_FULL, BURST_KEEP, LOAD, LOAD_DEFAULTS, LOAD_WORKERS, KEYS}
    assert documented == here | {".venv/bin/python bench/run.py --quick"}, documented ^ here

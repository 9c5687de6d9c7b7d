"""bench/load.py: its argument checks and the comparison its PASS rests on. Its documented command lines run end to end
(two proxies, and one proxy of two workers; spend equal to the clients' usage) in test_bench_doc_lines.py."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_load_script_fails_on_bad_arguments():
    res = subprocess.run([sys.executable, str(REPO / "bench" / "load.py"), "--keys", "0"], cwd=str(REPO), capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 2 and "--keys" in res.stderr


def test_spend_comparison_catches_a_single_token():
    """The check the script's PASS rests on notices one token missing, one extra row and a wrong key spend."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_load", REPO / "bench" / "load.py")
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    keys = ["sk-a", "sk-b"]
    tally = load.Tally()
    tally.success("sk-a", {"prompt_tokens": 3, "completion_tokens": 5})
    tally.success("sk-b", {"prompt_tokens": 2, "completion_tokens": 1})
    cost = {k: p * load.INPUT_COST + c * load.OUTPUT_COST for k, p, c in (("sk-a", 3, 5), ("sk-b", 2, 1))}
    logs = {load.token_hash("sk-a"): (1, 3, 5), load.token_hash("sk-b"): (1, 2, 1)}
    spend = {load.token_hash(k): v for k, v in cost.items()}
    assert load.compare(keys, tally, logs, spend)[0] == []
    assert len(load.compare(keys, tally, {**logs, load.token_hash("sk-b"): (1, 2, 0)}, spend)[0]) == 1
    assert len(load.compare(keys, tally, logs, {**spend, load.token_hash("sk-a"): cost["sk-a"] + load.INPUT_COST})[0]) == 1
    assert len(load.compare(keys, tally, {**logs, load.token_hash("sk-c"): (1, 1, 1)}, spend)[0]) == 1

#!/usr/bin/env python3
"""Benchmark: creating workshop keys with one ``rhpds.litemaas.virtual_keys`` task vs the upstream way
(one ``ansible.builtin.uri`` call to ``/key/generate`` per key, in a loop), against the same proxy in the same run.

Starts (127.0.0.1, free ports, all stopped on exit): PostgreSQL, Redis, the stub upstream and our proxy
(tests/support/). Then
  (a) ansible-playbook with one virtual_keys task creating N keys (count + alias pattern),
  (b) ansible-playbook with one uri task looping N times over POST /key/generate (as the upstream role does, minus
      its ~8 extra tasks per user, so the comparison favours the upstream way),
  (a') the playbook of (a) again, which must report changed=false and create nothing,
and prints both wall times, the ratio, and the verdict against the bars: (a) under 15 s for 1000 keys and at
least 20x faster than (b). Exit code 1 when a bar is missed.

Run with the checkout's virtualenv (scripts/test.sh and scripts/local.sh create it at .venv, or $LITEMAAS_VENV):
    .venv/bin/python bench/keys_bench.py [--count 1000] [--parallelism 16] [--json out.json] [--only-bulk]
LITEMAAS_BENCH_SCALE (a number > 0, default 1) multiplies --count (at least 2 keys) for a check that the script works;
such a run says so, and only its checks of the keys (all created, a re-run changes nothing) are judged, not its times.
Duration: with 1000 keys on 2 idle cores about 8 minutes (longer on a busy machine), nearly all of it the uri loop (b), which makes 1000 separate
task runs; (a) and its re-run take seconds. Progress of each playbook is printed as it runs (keys done, elapsed,
an estimate of the time left). --only-bulk skips (b).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.scale import BenchScale  # noqa: E402
from tests.support.proxy import ProxyProcess, stub_models  # noqa: E402
from tests.support.services import PostgresServer, RedisServer  # noqa: E402
from tests.support.stub_upstream import StubUpstream  # noqa: E402

BAR_SECONDS_PER_1000 = 15.0
BAR_RATIO = 20.0
MASTER_KEY = "sk-keys-bench-master"


def playbook_bulk(count: int, parallelism: int, out: Path) -> list:
    return [{
        "name": "Workshop keys with one virtual_keys task",
        "hosts": "localhost",
        "gather_facts": False,
        "connection": "local",
        "tasks": [
            {"name": "Create the keys", "rhpds.litemaas.virtual_keys": {
                "count": count, "alias_pattern": "bench-a-user{n}", "user_id_pattern": "user{n}@example.com", "models": ["stub-model"],
                "max_budget": 10, "duration": "2d", "parallelism": parallelism, "metadata": {"guid": "bench"}}, "register": "keys"},
            {"name": "Save counts", "ansible.builtin.copy": {"content": "{{ {'changed': keys.changed, 'counts': keys.counts} | to_json }}",
                                                             "dest": str(out), "mode": "0600"}},
        ],
    }]


def playbook_uri(count: int, url: str) -> list:
    return [{
        "name": "Workshop keys the upstream way: one uri call per key",
        "hosts": "localhost",
        "gather_facts": False,
        "connection": "local",
        "tasks": [
            {"name": "Create one key per user", "ansible.builtin.uri": {
                "url": url + "/key/generate", "method": "POST", "body_format": "json",
                "headers": {"Authorization": "Bearer {{ bench_master_key }}"},
                "body": {"models": ["stub-model"], "duration": "2d", "user_id": "user{{ item }}@example.com", "key_alias": "bench-b-user{{ item }}",
                         "metadata": {"guid": "bench", "user_number": "{{ item }}"}, "max_budget": 10},
                "status_code": [200, 201]},
             "loop": "{{ range(1, bench_count | int + 1) | list }}", "no_log": True},
        ],
    }]


ITEM_DONE = re.compile(r"^(ok|changed): \[localhost\] => \(item=")


def run_playbook(path: Path, env: dict, extra: dict | None = None, label: str = "", items: int = 0) -> float:
    """Run a playbook; with ``items``, print the progress of its loop (items done, elapsed, time left) every ~10%."""
    cmd = ["ansible-playbook", "-i", "localhost,", str(path)]
    for k, v in (extra or {}).items():
        cmd += ["-e", f"{k}={v}"]
    start = time.monotonic()
    out = []
    done = 0
    next_report = items // 10
    print(f"{label}: running ...", flush=True)
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            out.append(line)
            if items and ITEM_DONE.match(line):
                done += 1
                if done >= next_report and done < items:
                    elapsed = time.monotonic() - start
                    left = elapsed / done * (items - done)
                    print(f"{label}: {done}/{items} keys, {elapsed:.0f} s elapsed, about {left:.0f} s left", flush=True)
                    next_report += max(1, items // 10)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        text = "".join(out)
        raise RuntimeError(f"{path.name} failed:\n{text[-6000:]}")
    print(f"{label}: done in {elapsed:.1f} s", flush=True)
    return elapsed


def count_aliases(proxy: ProxyProcess, prefix: str) -> int:
    n, page = 0, 1
    while True:
        status, data = proxy.admin("GET", f"/key/list?page={page}&size=100&return_full_object=true")
        assert status == 200, data
        n += sum(1 for k in data["keys"] if (k.get("key_alias") or "").startswith(prefix))
        if page >= (data.get("total_pages") or 0):
            return n
        page += 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--parallelism", type=int, default=16)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--only-bulk", action="store_true", help="measure (a) and its re-run only (no ratio)")
    args = ap.parse_args(argv)
    if args.count < 1 or args.parallelism < 1:
        ap.error("--count and --parallelism must be positive")
    scale = BenchScale.for_parser(ap)
    requested = args.count
    args.count = scale.count(args.count, 2)
    if scale.scaled:
        print(scale.notice(), flush=True)

    # Not mkdtemp: PostgreSQL runs as its own OS user and must be able to enter the directory.
    work = REPO / ".work" / f"keys-bench-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    pg = redis = stub = proxy = None
    try:
        pg = PostgresServer(work / "pg").start()
        redis = RedisServer(work / "redis").start()
        stub = StubUpstream(log_path=work / "stub.log").start()
        proxy = ProxyProcess(pg.create_database("keys_bench"), redis.url, stub_models(stub.url), master_key=MASTER_KEY, work_dir=work / "proxy").start()

        coll = work / "collections" / "ansible_collections" / "rhpds"
        coll.mkdir(parents=True)
        (coll / "litemaas").symlink_to(REPO, target_is_directory=True)
        env = dict(os.environ)
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": str(work / "collections"), "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "true", "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false", "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
            "LITEMAAS_PROXY_URL": proxy.url, "LITEMAAS_MASTER_KEY": MASTER_KEY,
        })
        out = work / "bulk.json"
        (work / "bulk.yml").write_text(yaml.safe_dump(playbook_bulk(args.count, args.parallelism, out), sort_keys=False))
        (work / "uri.yml").write_text(yaml.safe_dump(playbook_uri(args.count, proxy.url), sort_keys=False))

        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"Creating {args.count} keys each way against {proxy.url} ...", flush=True)
        t_bulk = run_playbook(work / "bulk.yml", env, label="(a) one virtual_keys task")
        first = json.loads(out.read_text())
        t_uri = None if args.only_bulk else run_playbook(work / "uri.yml", env, {"bench_count": args.count, "bench_master_key": MASTER_KEY},
                                                         label="(b) uri loop", items=args.count)
        t_rerun = run_playbook(work / "bulk.yml", env, label="(a') re-run")
        second = json.loads(out.read_text())
        made_a, made_b = count_aliases(proxy, "bench-a-"), count_aliases(proxy, "bench-b-")
    finally:
        for svc in (proxy, stub, redis, pg):
            if svc is not None:
                try:
                    svc.stop()
                except Exception as exc:  # keep stopping the others
                    print(f"warning: stopping {type(svc).__name__}: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)

    bar_seconds = BAR_SECONDS_PER_1000 * args.count / 1000
    checks = {
        f"(a) one virtual_keys task < {bar_seconds:.1f} s": None if scale.scaled else t_bulk < bar_seconds,
        f"(a) created all {args.count} keys": first["counts"]["created"] == args.count and made_a == args.count,
        "(a) re-run: changed=false, nothing created": second["changed"] is False and second["counts"]["unchanged"] == args.count,
    }
    ratio = None
    print(f"load average before/after: {load_before} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"(a) virtual_keys, one task, parallelism {args.parallelism}: {t_bulk:8.2f} s  ({args.count / t_bulk:7.1f} keys/s)")
    if t_uri is not None:
        ratio = t_uri / t_bulk
        checks[f"(a) >= {BAR_RATIO:.0f}x faster than (b)"] = None if scale.scaled else ratio >= BAR_RATIO
        checks[f"(b) created all {args.count} keys"] = made_b == args.count
        print(f"(b) ansible.builtin.uri loop, one call per key:      {t_uri:8.2f} s  ({args.count / t_uri:7.1f} keys/s)")
        print(f"    ratio (b)/(a): {ratio:.1f}x")
    print(f"(a) re-run: {t_rerun:.2f} s, changed={second['changed']}, counts={second['counts']}")
    for name, ok in checks.items():
        print(f"  [{ {True: 'PASS', False: 'FAIL', None: 'n/a '}[ok]}] {name}{'  (not judged: scaled run)' if ok is None else ''}")
    if scale.scaled:
        print(scale.notice())
    if args.json:
        args.json.write_text(json.dumps({"count": args.count, "requested_count": requested, "parallelism": args.parallelism, "bulk_s": t_bulk,
                                         "uri_s": t_uri, "ratio": ratio, "rerun_s": t_rerun, "rerun_counts": second["counts"], "checks": checks,
                                         "scale": scale.record()}, indent=2))
    return 0 if all(ok is not False for ok in checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

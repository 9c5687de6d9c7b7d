#!/usr/bin/env python3
"""Load and spend-accuracy check: many keys through several proxy processes sharing PostgreSQL and Redis.

Starts (all on 127.0.0.1, free ports, stopped again on exit or error; data under .work/load-<pid>/):
  * a fresh PostgreSQL cluster and a Redis server (tests/support/services.py),
  * the stub upstream (tests/support/stub_upstream.py): deterministic usage, no delay,
  * ``--proxies`` litemaas-proxy processes (``--workers`` worker processes each) sharing that database and Redis.
Creates ``--keys`` virtual keys through the management API (every ``--limited-every``-th key gets a low RPM
limit so that 429s happen and are checked not to be charged), then drives ``/v1/chat/completions`` for
``--duration`` seconds from ``--concurrency`` keep-alive clients spread over all proxies and keys (every
``--stream-every``-th request streams with ``stream_options.include_usage``). Then it stops the proxies with
SIGTERM (the spend buffer is flushed) and compares, per key and in total, the usage the clients received
with what PostgreSQL recorded:
  * ``"LiteLLM_SpendLogs"``: successful rows, prompt and completion tokens equal to the clients' sums;
  * ``"LiteLLM_VerificationToken".spend`` equal to prompt x input price + completion x output price within
    half the price of one token (that is: to the token).

Prints requests/s, the error rate excluding 429, counts per status, CPU use during the load (this run's processes vs
the rest of the machine, 100% = one core), and PASS/FAIL. Exit 0 on PASS, 1 on FAIL.

Run from the repo root: .venv/bin/python bench/load.py [--duration 60] [--concurrency 32] [--keys 200] [--proxies 2] [--workers 1]

LITEMAAS_BENCH_SCALE (a number > 0, default 1) multiplies the seconds of load (at least 1 s) and the number of keys (at
least 2), for a check that the script works; such a run says so, and its spend check is judged as always.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.scale import BenchScale  # noqa: E402
from tests.support.proxy import INPUT_COST, OUTPUT_COST, ProxyProcess, start_backing, stub_models  # noqa: E402
from tests.support.services import stop_all  # noqa: E402

MODEL = "stub-model"
MASTER_KEY = "sk-load-master-key"
SPEND_TABLE = '"LiteLLM_SpendLogs"'
KEY_TABLE = '"LiteLLM_VerificationToken"'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Load through several proxies sharing PostgreSQL and Redis; check spend == client usage")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent keep-alive clients (default 32)")
    parser.add_argument("--keys", type=int, default=200, help="virtual keys to create and use (default 200)")
    parser.add_argument("--proxies", type=int, default=2, help="proxy processes sharing the database and Redis (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of each proxy, sharing its port (--workers; default 1)")
    parser.add_argument("--stream-every", type=int, default=5, help="every N-th request streams (0 = never; default 5)")
    parser.add_argument("--limited-every", type=int, default=10, help="every N-th key gets --limited-rpm (0 = none; default 10)")
    parser.add_argument("--limited-rpm", type=int, default=20, help="RPM limit of the limited keys (default 20)")
    parser.add_argument("--max-error-rate", type=float, default=0.01, help="FAIL above this share of non-429 errors (default 0.01)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", dest="json_path", help="also write the results as JSON to this file")
    parser.add_argument("--work-dir", help="where the services keep data and logs (default .work/load-<pid>, removed unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) after the run")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1 or args.keys < 1 or args.proxies < 1 or args.workers < 1:
        parser.error("--duration, --concurrency, --keys, --proxies and --workers must be positive")
    args.scale = BenchScale.for_parser(parser)
    args.requested = {"duration": args.duration, "keys": args.keys}
    args.duration = args.scale.seconds(args.duration, 1.0)
    args.keys = args.scale.count(args.keys, 2)
    return args


TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple:
    """(busy ticks, total ticks) of the whole machine from /proc/stat."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def tree_ticks(roots: list) -> int:
    """CPU ticks (user + system) of the given processes and all their descendants still alive."""
    parents, ticks = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    total, wanted = 0, set(roots)
    for pid in ticks:
        p = pid
        while p > 1 and p not in wanted:
            p = parents.get(p, 0)
        if p in wanted:
            total += ticks[pid]
    return total


def token_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Tally:
    """What the clients saw: counts per status, and per key the usage of the successful answers."""

    def __init__(self):
        self.status = collections.Counter()
        self.ok = collections.Counter()  # key -> successful requests
        self.prompt = collections.Counter()  # key -> prompt tokens returned to the client
        self.completion = collections.Counter()
        self.no_usage = 0  # successful answers without usage (would make the spend check meaningless)
        self.examples: dict = {}  # status -> one error body

    def success(self, key: str, usage) -> None:
        self.status["200"] += 1
        if not isinstance(usage, dict):
            self.no_usage += 1
            return
        self.ok[key] += 1
        self.prompt[key] += int(usage.get("prompt_tokens") or 0)
        self.completion[key] += int(usage.get("completion_tokens") or 0)

    def failure(self, status: str, detail: str = "") -> None:
        self.status[status] += 1
        if detail and status not in self.examples:
            self.examples[status] = detail[:300]


async def one_request(session, url: str, key: str, body: dict, stream: bool, tally: Tally) -> None:
    import aiohttp

    try:
        async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as resp:
            if resp.status != 200:
                tally.failure(str(resp.status), await resp.text())
                return
            if not stream:
                data = await resp.json()
                tally.success(key, data.get("usage"))
                return
            usage, done = None, False
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    done = True
                    continue
                chunk = json.loads(payload)
                if "error" in chunk:
                    tally.failure("stream-error", payload.decode(errors="replace"))
                    return
                if chunk.get("usage"):
                    usage = chunk["usage"]
            if not done:
                tally.failure("stream-incomplete")
                return
            tally.success(key, usage)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        tally.failure(f"client:{type(exc).__name__}", str(exc))


async def drive(proxies: list, keys: list, args, tally: Tally) -> float:
    """Closed-loop load for ``args.duration`` seconds; returns the elapsed wall time (in-flight requests finish)."""
    import aiohttp

    rng = random.Random(args.seed)
    words = ["alpha", "beta", "gamma", "delta", "eps"]
    counter = iter(range(1 << 62))
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency, force_close=False),
                                      timeout=aiohttp.ClientTimeout(total=60)) for dummy in proxies]
    urls = [p.url + "/v1/chat/completions" for p in proxies]
    start = time.monotonic()
    deadline = start + args.duration

    async def worker():
        while time.monotonic() < deadline:
            n = next(counter)
            key = keys[n % len(keys)]
            # Rotate the proxy per pass over the keys so that every key is used on every proxy.
            which = (n + n // len(keys)) % len(proxies)
            stream = bool(args.stream_every) and n % args.stream_every == args.stream_every - 1
            body = {"model": MODEL, "messages": [{"role": "user", "content": " ".join(rng.choices(words, k=rng.randint(1, 40)))}],
                    "max_tokens": rng.randint(1, 32)}
            if stream:
                body["stream"] = True
                body["stream_options"] = {"include_usage": True}
            await one_request(sessions[which], urls[which], key, body, stream, tally)

    try:
        await asyncio.gather(*(worker() for dummy in range(args.concurrency)))
    finally:
        for s in sessions:
            await s.close()
    return time.monotonic() - start


def recorded(dsn: str, hashes: list) -> tuple:
    """Per key hash: (successful spend log rows, prompt tokens, completion tokens, key spend); and failure rows."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT api_key, count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) FROM {SPEND_TABLE} "
                        "WHERE status = 'success' GROUP BY api_key")
            logs = {row[0]: (int(row[1]), int(row[2]), int(row[3])) for row in cur.fetchall()}
            cur.execute(f"SELECT token, spend FROM {KEY_TABLE} WHERE token = ANY(%s)", (hashes,))
            spend = {row[0]: float(row[1] or 0.0) for row in cur.fetchall()}
            cur.execute(f"SELECT count(*) FROM {SPEND_TABLE} WHERE status <> 'success'")
            failure_rows = int(cur.fetchone()[0])
    finally:
        conn.close()
    return logs, spend, failure_rows


def compare(keys: list, tally: Tally, logs: dict, spend: dict) -> tuple:
    """Return (list of mismatch lines, totals dict)."""
    half_token = min(c for c in (INPUT_COST, OUTPUT_COST) if c > 0) / 2
    mismatches = []
    tot = {"client_requests": 0, "client_prompt": 0, "client_completion": 0, "db_requests": 0, "db_prompt": 0, "db_completion": 0,
           "client_cost": 0.0, "db_key_spend": 0.0}
    for key in keys:
        h = token_hash(key)
        want = (tally.ok[key], tally.prompt[key], tally.completion[key])
        got = logs.get(h, (0, 0, 0))
        cost = want[1] * INPUT_COST + want[2] * OUTPUT_COST
        key_spend = spend.get(h)
        for i, name in enumerate(("client_requests", "client_prompt", "client_completion")):
            tot[name] += want[i]
        for i, name in enumerate(("db_requests", "db_prompt", "db_completion")):
            tot[name] += got[i]
        tot["client_cost"] += cost
        tot["db_key_spend"] += key_spend or 0.0
        if want != got:
            mismatches.append(f"key {h[:12]}: client requests/prompt/completion {want} != spend logs {got}")
        if key_spend is None or abs(key_spend - cost) >= half_token:
            mismatches.append(f"key {h[:12]}: key spend {key_spend!r} != client usage cost {cost!r}")
    extra = set(logs) - {token_hash(k) for k in keys}
    for h in sorted(extra):
        mismatches.append(f"spend logs for an unknown key {h[:12]}: {logs[h]}")
    return mismatches, tot


def run(args) -> dict:
    work = Path(args.work_dir).resolve() if args.work_dir else REPO / ".work" / f"load-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    started = []
    result: dict = {"passed": False}
    if args.scale.scaled:
        print(args.scale.notice(), flush=True)
    try:
        print(f"starting PostgreSQL, Redis, the stub upstream and {args.proxies} proxies of {args.workers} worker(s) (work dir {work}) ...", flush=True)
        pg, redis, stub = start_backing(work, started)
        dsn = pg.create_database("litellm_db")
        proxies = []
        for i in range(args.proxies):
            p = ProxyProcess(dsn, redis.url, stub_models(stub.url), master_key=MASTER_KEY, work_dir=work / f"proxy-{i + 1}",
                             env={"LITEMAAS_SPEND_FLUSH_INTERVAL": "1"}, workers=args.workers)
            started.append(p)
            proxies.append(p.start())

        print(f"creating {args.keys} keys ...", flush=True)
        keys = []
        for i in range(args.keys):
            body = {"key_alias": f"load-{i}", "models": [MODEL]}
            if args.limited_every and i % args.limited_every == args.limited_every - 1:
                body["rpm_limit"] = args.limited_rpm
            else:
                body.update(rpm_limit=1_000_000, tpm_limit=1_000_000_000)
            status, data = proxies[i % len(proxies)].admin("POST", "/key/generate", body)
            if status != 200:
                raise RuntimeError(f"/key/generate failed: {status} {data}")
            keys.append(data["key"])

        print(f"load: {args.duration:g} s at concurrency {args.concurrency} over {len(keys)} keys and {len(proxies)} proxies ...", flush=True)
        tally = Tally()
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        roots = [os.getpid()] + [t.proc.pid for t in started if getattr(t, "proc", None) is not None]
        busy0, ours0 = machine_busy(), tree_ticks(roots)
        elapsed = asyncio.run(drive(proxies, keys, args, tally))
        busy1, ours1 = machine_busy(), tree_ticks(roots)
        cpus = os.cpu_count() or 1
        machine_pct = 100.0 * cpus * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])  # 100% = one core
        ours_pct = 100.0 * (ours1 - ours0) / TICKS / elapsed if elapsed else 0.0

        print("stopping the proxies with SIGTERM (spend is flushed) ...", flush=True)
        exit_codes = [p.terminate() for p in proxies]
        logs, spend, failure_rows = recorded(dsn, [token_hash(k) for k in keys])
        mismatches, tot = compare(keys, tally, logs, spend)

        total = sum(tally.status.values())
        limited = tally.status.get("429", 0)
        errors = total - tally.status.get("200", 0) - limited
        error_rate = errors / (total - limited) if total - limited else 0.0
        reasons = []
        if mismatches:
            reasons.append(f"{len(mismatches)} spend mismatches")
        if tally.no_usage:
            reasons.append(f"{tally.no_usage} successful answers without usage")
        if not tot["client_requests"]:
            reasons.append("no successful request")
        if error_rate > args.max_error_rate:
            reasons.append(f"error rate {error_rate:.4%} above {args.max_error_rate:.2%}")
        if any(code != 0 for code in exit_codes):
            reasons.append(f"proxy exit codes {exit_codes}")
        result = {
            "passed": not reasons, "reasons": reasons, "duration": args.duration, "elapsed": elapsed, "concurrency": args.concurrency,
            "keys": len(keys), "proxies": len(proxies), "workers": args.workers, "requests": total, "rps": total / elapsed if elapsed else 0.0,
            "ok_rps": tally.status.get("200", 0) / elapsed if elapsed else 0.0, "error_rate_excluding_429": error_rate,
            "status_counts": dict(sorted(tally.status.items())), "error_examples": tally.examples, "failure_rows": failure_rows,
            "spend_equal": not mismatches, "mismatches": mismatches[:50], "totals": tot, "proxy_exit_codes": exit_codes,
            "cpu": {"cores": cpus, "machine_pct": machine_pct, "ours_pct": ours_pct, "other_pct": max(0.0, machine_pct - ours_pct)},
            "requested": args.requested, "scale": args.scale.record(),
        }
        return result
    finally:
        stop_all(started, lambda message: print(f"warning: {message}", file=sys.stderr))
        if not args.keep and not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


def report(res: dict) -> None:
    tot = res["totals"]
    print()
    if res["scale"]["scaled"]:
        print(res["scale"]["note"])
    print(f"requests            {res['requests']} in {res['elapsed']:.1f} s  ->  {res['rps']:.1f} req/s ({res['ok_rps']:.1f} successful req/s)")
    cpu = res["cpu"]
    print(f"CPU during the load {cpu['machine_pct']:.0f}% of {cpu['cores'] * 100}% busy: this run {cpu['ours_pct']:.0f}%,"
          f" other processes {cpu['other_pct']:.0f}% (high 'other' = measured on a busy machine)")
    print(f"status counts       {', '.join(f'{k}: {v}' for k, v in res['status_counts'].items())}")
    print(f"error rate (no 429) {res['error_rate_excluding_429']:.4%}")
    for status, text in res["error_examples"].items():
        if status != "429":
            print(f"  example {status}: {text}")
    print(f"client usage        {tot['client_requests']} successful requests, {tot['client_prompt']} prompt + {tot['client_completion']} completion tokens,"
          f" cost {tot['client_cost']:.6f}")
    print(f"recorded in DB      {tot['db_requests']} spend log rows, {tot['db_prompt']} prompt + {tot['db_completion']} completion tokens,"
          f" key spend {tot['db_key_spend']:.6f} ({res['failure_rows']} failure rows)")
    print(f"spend check         {'equal, per key and in total, to the token' if res['spend_equal'] else 'MISMATCH'}")
    for line in res["mismatches"][:20]:
        print(f"  {line}")
    print()
    print("PASS" if res["passed"] else f"FAIL: {'; '.join(res['reasons'])}")


def main(argv=None) -> int:
    args = parse_args(argv)
    res = run(args)
    report(res)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(res, indent=2, sort_keys=True))
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Workshop burst: N attendees start a streaming chat in the same second, each with their own virtual key.

Starts (all on 127.0.0.1, free ports, stopped again on exit or error; data under .work/burst-<pid>/):
  * PostgreSQL and Redis (tests/support/services.py) for our proxy,
  * the stub upstream (tests/support/stub_upstream.py) in slow-streaming mode: --chunks content chunks
    --gap seconds apart (default 50 x 100 ms: a 5 s answer), like a model server generating tokens,
  * our proxy (``--workers`` 1 and 2 by default) with max(--n) virtual keys made by /key/generate, each with
    workshop limits (RPM, TPM, budget), so key lookup, Redis limits and spend recording run on every request,
  * LiteLLM 1.81.0's proxy (bench/run.py installs it into .work/bench/litellm-venv): no database, so it has no
    virtual keys and every request uses its master key (it does less work per request than ours).
For each N, one burst per target: N streaming chats (``stream: true``, official SSE) started at the same moment,
each on its own new connection, with N distinct keys for ours. Our proxy is measured twice per worker count:
"cold" (a fresh process, no key cached: every key is looked up in PostgreSQL during the burst) and "warm" (the
same burst again on that process, keys cached; LITEMAAS_KEY_CACHE_TTL=300 for the bench).

The client runs in a separate process (this script with --client; uvloop + aiohttp, raw SSE, the first body bytes
time the first token, then bytes are only counted), so its work does not share the servers' event loop. It does
share the machine's cores with the servers: its CPU seconds are printed so a saturated client shows.

Per target: ok/N, errors by kind, TTFT p50/p99 and added over the stub (same N), total p99, peak RSS (whole process
tree, and the largest single process), CPU seconds of the target during the burst, and the delta of the kernel's
TcpExt ListenOverflows/ListenDrops counters (the network namespace's: other programs' overflows count too).

Run from the repo root: .venv/bin/python bench/burst.py [--n 1000,2000] [--workers 1,2] [--skip-litellm] [--litellm-n 1000]

LITEMAAS_BENCH_SCALE (a number > 0, default 1) multiplies the burst sizes (at least 20 streams), the gap between
chunks (at least 10 ms) and the pauses between bursts, for a check that the script works; such a run says so.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import datetime
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.scale import BenchScale  # noqa: E402
from tests.support.proxy import ProxyProcess, http_json, start_backing, stub_models  # noqa: E402
from tests.support.services import stop_all  # noqa: E402

MODEL = "stub-model"
MASTER_KEY = "sk-burst-master-key"
CLIENT_TIMEOUT = 120.0


def _load_run_module():
    """bench/run.py: process-tree RSS/CPU, the LiteLLM install and its start."""
    spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).resolve().parent / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log(msg: str) -> None:
    print(f"[burst {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- client (a separate process) -------------------------------------------------------------------------------------
def percentile(values: list, q: float):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100.0 * len(ordered) + 0.5)) - 1))]


class _Stream(asyncio.Protocol):
    """One streaming request on its own connection, read raw: the time of the first SSE event, the number of
    events, and the end of the chunked body. Far cheaper per byte than a general HTTP client."""

    def __init__(self, request: bytes, t0: float):
        self.request = request
        self.t0 = t0
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        self.head = b""
        self.status = None
        self.ttft = None
        self.events = 0
        self.tail = b""
        self.saw_done = False
        self.body_start = b""

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        if self.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head[9:12])
            data = self.head[end + 4:]
            if self.status != 200:
                self.body_start = data[:300]
                self._finish()
                return
        if not data:
            return
        joined = self.tail + data
        if self.ttft is None and b"data: " in joined:
            self.ttft = self.loop.time() - self.t0
        self.events += joined.count(b"data: ") - self.tail.count(b"data: ")
        self.saw_done = self.saw_done or b"[DONE]" in joined
        self.tail = joined[-16:]
        if self.tail.endswith(b"\r\n0\r\n\r\n"):
            self._finish()

    def connection_lost(self, exc):
        self._finish(exc)

    def _finish(self, exc=None):
        if not self.done.done():
            self.done.set_result(exc)
        if self.transport is not None:
            self.transport.close()


async def _one(host: str, port: int, request: bytes, gate: asyncio.Event, chunks: int, timeout: float, out: list,
               errors: collections.Counter, samples: dict) -> None:
    await gate.wait()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    proto = None
    try:
        async with asyncio.timeout(timeout):
            dummy, proto = await loop.create_connection(lambda: _Stream(request, t0), host, port)
            await proto.done
    except TimeoutError:
        errors["timeout (no first byte)" if proto is None or proto.ttft is None else "timeout (mid-stream)"] += 1
        if proto is not None:
            proto.transport.abort()
        return
    except OSError as exc:
        errors[f"connect: {exc.strerror or type(exc).__name__}"] += 1
        return
    total = loop.time() - t0
    if proto.status != 200:
        kind = f"http {proto.status}"
        errors[kind] += 1
        samples.setdefault(kind, proto.body_start.decode("utf-8", "replace"))
        return
    # role chunk + content chunks + finish chunk (+ usage) + [DONE]; fewer means the stream was cut.
    if proto.events < chunks + 2 or not proto.saw_done:
        errors["incomplete stream"] += 1
        return
    out.append((proto.ttft, total))


async def _client(url: str, keys: list, chunks: int, timeout: float) -> dict:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "say something long"}], "stream": True,
                       "max_tokens": chunks}).encode()
    gate = asyncio.Event()
    out: list = []
    errors: collections.Counter = collections.Counter()
    samples: dict = {}

    def request(key: str) -> bytes:
        return (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode() + body

    # Every request on its own new connection, as N separate attendees' clients would be.
    tasks = [asyncio.ensure_future(_one(parts.hostname, parts.port, request(k), gate, chunks, timeout, out, errors, samples)) for k in keys]
    await asyncio.sleep(0.2)  # every task is parked at the gate
    started = time.monotonic()
    gate.set()
    await asyncio.wait(tasks, timeout=timeout + 30)
    for t in tasks:
        t.cancel()
    wall = time.monotonic() - started
    ttfts = [t for t, dummy in out]
    totals = [t for dummy, t in out]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"n": len(keys), "ok": len(out), "errors": dict(errors), "error_samples": samples, "wall_s": wall,
            "ttft_p50": percentile(ttfts, 50), "ttft_p99": percentile(ttfts, 99), "ttft_max": max(ttfts) if ttfts else None,
            "total_p50": percentile(totals, 50), "total_p99": percentile(totals, 99),
            "waited_1s": sum(1 for t in ttfts if t >= 1.0), "client_cpu_s": usage.ru_utime + usage.ru_stime}


def client_main(args) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    keys = json.loads(Path(args.keys_file).read_text())
    result = asyncio.run(_client(args.client, keys, args.chunks, args.timeout))
    print(json.dumps(result), flush=True)
    return 0


# ---- measurements ---------------------------------------------------------------------------------------------------
def listen_counters() -> dict:
    """TcpExt ListenOverflows and ListenDrops from /proc/net/netstat."""
    with open("/proc/net/netstat") as fh:
        lines = fh.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], (int(v) for v in values.split()[1:])))
            return {"ListenOverflows": table.get("ListenOverflows", 0), "ListenDrops": table.get("ListenDrops", 0)}
    return {"ListenOverflows": 0, "ListenDrops": 0}


class RssSampler(threading.Thread):
    """Peak resident memory of a process tree (and of its largest process) every 100 ms, at most ``limit`` seconds."""

    def __init__(self, run_mod, pid: int, limit: float):
        super().__init__(daemon=True)
        self.run_mod, self.pid, self.limit = run_mod, pid, limit
        self.peak_tree = 0.0
        self.peak_one = 0.0
        self.stop_event = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        page = os.sysconf("SC_PAGE_SIZE")
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            alone = []
            for p in self.run_mod.tree(self.pid):
                try:
                    with open(f"/proc/{p}/statm") as fh:
                        alone.append(int(fh.read().split()[1]) * page / 1e6)
                except OSError:
                    pass
            if alone:
                self.peak_tree = max(self.peak_tree, sum(alone))
                self.peak_one = max(self.peak_one, max(alone))
            self.stop_event.wait(0.1)


def burst(run_mod, target: str, url: str, pid: int, keys: list, args, work: Path) -> dict:
    keys_file = work / f"keys-{target}-{len(keys)}.json"
    keys_file.write_text(json.dumps(keys))
    cpu0 = run_mod.cpu_seconds(pid)
    mine0, box0 = run_mod.cpu_seconds(os.getpid()), run_mod.box_busy_seconds()
    reaped0 = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
    window0 = time.monotonic()
    net0 = listen_counters()
    sampler = RssSampler(run_mod, pid, CLIENT_TIMEOUT + 60)
    sampler.start()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--client", url, "--keys-file", str(keys_file), "--chunks", str(args.chunks),
           "--timeout", str(CLIENT_TIMEOUT)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=CLIENT_TIMEOUT + 90, check=False)
    sampler.stop_event.set()
    sampler.join(5)
    net1 = listen_counters()
    cpu1 = run_mod.cpu_seconds(pid)
    # The client has exited: its CPU is in this process's children times, not in the live tree.
    reaped1 = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
    window = time.monotonic() - window0
    mine1, box1 = run_mod.cpu_seconds(os.getpid()), run_mod.box_busy_seconds()
    if res.returncode != 0:
        raise RuntimeError(f"client failed for {target}: {res.stderr[-2000:]}")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    # CPU the rest of the machine (other users' jobs) used during the burst: all busy time minus this run's processes.
    others = max(0.0, (box1 - box0) - (mine1 - mine0) - (reaped1 - reaped0))
    row["others_cpu_pct"] = 100.0 * others / (window * (os.cpu_count() or 1))
    row.update(target=target, cpu_s=cpu1 - cpu0, rss_peak_mb=sampler.peak_tree, rss_peak_one_mb=sampler.peak_one,
               listen_overflows=net1["ListenOverflows"] - net0["ListenOverflows"], listen_drops=net1["ListenDrops"] - net0["ListenDrops"])
    return row


# ---- targets --------------------------------------------------------------------------------------------------------
def make_keys(proxy: ProxyProcess, count: int) -> list:
    body = {"models": [MODEL], "rpm_limit": 60, "tpm_limit": 200_000, "max_budget": 5.0}

    def one(i):
        status, data = proxy.admin("POST", "/key/generate", {**body, "key_alias": f"attendee-{i}"})
        if status != 200:
            raise RuntimeError(f"/key/generate failed: {status} {data}")
        return data["key"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(count)))


def key_lookups(proxy: ProxyProcess) -> tuple:
    """(keys looked up, queries) from /metrics (one worker: with several, each answers for itself)."""
    import re

    dummy, text, dummy2 = http_json("GET", proxy.url + "/metrics")
    found = {}
    for name in ("litemaas_key_lookups_total", "litemaas_key_lookup_batches_total"):
        match = re.search(rf"^{name} ([0-9.e+]+)$", text if isinstance(text, str) else "", re.M)
        found[name] = float(match.group(1)) if match else float("nan")
    return found["litemaas_key_lookups_total"], found["litemaas_key_lookup_batches_total"]


def fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def report(rows: list, notes: list) -> str:
    hdr = (f"{'N':>5} {'target':18} {'ok/N':>11} {'TTFT p50':>9} {'TTFT p99':>9} {'+p50':>7} {'+p99':>7} {'total p99':>9} "
           f"{'>=1s':>5} {'RSS MB':>7} {'max/proc':>8} {'CPU s':>6} {'client':>6} {'others':>6} {'wall':>5} {'ovfl':>5}  errors")
    lines = [hdr, "-" * len(hdr)]
    stub = {r["n"]: r for r in rows if r["target"] == "stub alone"}
    for r in rows:
        s = stub.get(r["n"])
        add50 = None if s is None or r["ttft_p50"] is None or s["ttft_p50"] is None else r["ttft_p50"] - s["ttft_p50"]
        add99 = None if s is None or r["ttft_p99"] is None or s["ttft_p99"] is None else r["ttft_p99"] - s["ttft_p99"]
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) or "none"
        for kind, sample in (r.get("error_samples") or {}).items():
            notes.append(f"N={r['n']} {r['target']}, first {kind} body: {sample[:200]}")
        lines.append(f"{r['n']:>5} {r['target']:18} {str(r['ok']) + '/' + str(r['n']):>11} {fmt(r['ttft_p50']):>9} {fmt(r['ttft_p99']):>9} "
                     f"{fmt(add50):>7} {fmt(add99):>7} {fmt(r['total_p99']):>9} {r['waited_1s']:>5} {r['rss_peak_mb']:>7.0f} "
                     f"{r['rss_peak_one_mb']:>8.0f} {r['cpu_s']:>6.2f} {r['client_cpu_s']:>6.1f} {r['others_cpu_pct']:>5.0f}% {r['wall_s']:>5.1f} "
                     f"{r['listen_overflows']:>5}  {errors}")
    lines.append("")
    lines.append("Seconds. +p50/+p99: TTFT added over the stub alone at the same N. >=1s: streams whose first byte took 1 s or more.")
    lines.append("RSS MB: peak of the whole process tree (workers + parent); max/proc: the largest single process. CPU s: the target's")
    lines.append("processes during the burst (ours: not PostgreSQL/Redis). client: the load client's own CPU seconds. ovfl: kernel")
    lines.append("TcpExt ListenOverflows during the burst (whole network namespace). others: share of the machine's CPU used during")
    lines.append("the burst by processes outside this run (other users' jobs); wall: seconds the burst took. All share this machine's cores.")
    lines.extend(notes)
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", default="1000,2000", help="comma-separated burst sizes (default 1000,2000)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts of our proxy (default 1,2)")
    p.add_argument("--chunks", type=int, default=50, help="content chunks per streamed answer (default 50)")
    p.add_argument("--gap", type=float, default=0.1, help="seconds between chunks (default 0.1)")
    p.add_argument("--skip-litellm", action="store_true", help="no LiteLLM rows")
    p.add_argument("--litellm-n", type=int, default=None, help="run LiteLLM only for N up to this (default: every N)")
    p.add_argument("--skip-warm", action="store_true", help="no warm-cache rows")
    p.add_argument("--litellm-venv", default=str(REPO / ".work/bench/litellm-venv"))
    p.add_argument("--out", default=str(REPO / ".work/bench/burst.json"))
    p.add_argument("--keep", action="store_true", help="keep the work directory (service and proxy logs) after the run")
    # client mode (internal)
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--keys-file", help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=CLIENT_TIMEOUT, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.n_list = [int(v) for v in args.n.split(",") if v.strip()]
        args.workers_list = [int(v) for v in args.workers.split(",") if v.strip()]
    except ValueError:
        p.error("--n and --workers take comma-separated integers")
    if not args.n_list or min(args.n_list) < 1 or max(args.n_list) > 5000:
        p.error("--n: burst sizes between 1 and 5000")
    if not args.workers_list or min(args.workers_list) < 1 or max(args.workers_list) > 8:
        p.error("--workers: between 1 and 8")
    if args.chunks < 1 or args.chunks > 1000 or args.gap < 0 or args.gap > 1:
        p.error("--chunks between 1 and 1000, --gap between 0 and 1 second")
    args.scale = BenchScale.for_parser(p)
    args.requested = {"n": args.n_list, "gap": args.gap, "litellm_n": args.litellm_n}
    args.pause = 2.0  # seconds between bursts: the servers settle
    if args.scale.scaled and not args.client:
        args.n_list = [args.scale.count(n, 20) for n in args.n_list]
        args.litellm_n = None if args.litellm_n is None else args.scale.count(args.litellm_n, 20)
        args.gap = args.scale.seconds(args.gap, 0.01)
        args.pause = args.scale.seconds(args.pause, 0.1)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.client:
        return client_main(args)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # every process started from here inherits it
    if hard < 3 * max(args.n_list) + 200:
        log(f"warning: the open-file limit ({hard}) is low for N={max(args.n_list)}")
    if args.scale.scaled:
        log(args.scale.notice())
    run_mod = _load_run_module()
    work = REPO / ".work" / f"burst-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    started: list = []
    rows: list = []
    notes: list = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not args.skip_litellm:
            run_mod.ensure_litellm(Path(args.litellm_venv))
        log(f"starting PostgreSQL, Redis and the stub ({args.chunks} chunks, {args.gap:g} s apart) in {work}")
        pg, redis, stub = start_backing(work, started)
        status, dummy, dummy2 = http_json("POST", stub.base_url + "/__stub/config", {"stream_chunks": args.chunks, "stream_chunk_delay": args.gap})
        if status != 200:
            raise RuntimeError(f"stub config failed: {status}")
        dsn = pg.create_database("litellm_db")
        env = {"LITEMAAS_KEY_CACHE_TTL": "300", "LITEMAAS_SPEND_FLUSH_INTERVAL": "1"}

        def our_proxy(workers: int, name: str) -> ProxyProcess:
            p = ProxyProcess(dsn, redis.url, stub_models(stub.url), master_key=MASTER_KEY, work_dir=work / name, env=env, workers=workers)
            started.append(p)
            return p.start(timeout=60)

        maker = our_proxy(1, "keymaker")
        log(f"creating {max(args.n_list)} virtual keys")
        all_keys = make_keys(maker, max(args.n_list))
        maker.terminate()
        started.remove(maker)

        lite = None
        if not args.skip_litellm:
            cfg = work / "litellm-config.yaml"
            run_mod.write_model_config(cfg, stub.url)
            lite_args = argparse.Namespace(litellm_venv=args.litellm_venv)
            lite, lport, lready = run_mod.start_litellm(lite_args, work, cfg)
            started.append(lite)
            log(f"LiteLLM ready in {lready:.1f} s")
            notes.append("LiteLLM 1.81.0 runs without a database (its virtual keys need one): every request uses its master key, "
                         "so it skips the key lookups, limits and spend writes ours does.")

        for n in args.n_list:
            keys = all_keys[:n]
            log(f"N={n}: stub alone")
            rows.append({**burst(run_mod, "stub alone", stub.url + "/chat/completions", stub.pid, keys, args, work), "n": n})
            time.sleep(args.pause)
            for workers in args.workers_list:
                p = our_proxy(workers, f"ours-{n}-{workers}")
                label = f"ours {workers}w"
                log(f"N={n}: {label} cold")
                rows.append({**burst(run_mod, f"{label} cold", p.url + "/v1/chat/completions", p.pid, keys, args, work), "n": n})
                if workers == 1:  # with several workers /metrics answers for one of them
                    looked, queries = key_lookups(p)
                    notes.append(f"N={n} {label} cold: {looked:.0f} keys looked up in {queries:.0f} database queries.")
                time.sleep(args.pause)
                if not args.skip_warm:
                    log(f"N={n}: {label} warm")
                    rows.append({**burst(run_mod, f"{label} warm", p.url + "/v1/chat/completions", p.pid, keys, args, work), "n": n})
                    time.sleep(args.pause)
                p.terminate()
                started.remove(p)
            if lite is not None and (args.litellm_n is None or n <= args.litellm_n):
                log(f"N={n}: LiteLLM (master key)")
                rows.append({**burst(run_mod, "LiteLLM 1.81.0", f"http://127.0.0.1:{lport}/v1/chat/completions", lite.pid,
                                     [run_mod.MASTER_KEY] * n, args, work), "n": n})
                time.sleep(args.pause)
            elif lite is not None:
                notes.append(f"LiteLLM not run at N={n} (--litellm-n {args.litellm_n}).")
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        notes.append(f"{stamp}, {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
                     f"stub answer: {args.chunks} chunks {args.gap:g} s apart; client timeout {CLIENT_TIMEOUT:g} s.")
        text = report(rows, notes)
        if args.scale.scaled:
            text = args.scale.notice() + "\n" + text
        print(text)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": rows, "notes": notes, "args": {"n": args.n_list, "workers": args.workers_list, "chunks": args.chunks,
                                                                          "gap": args.gap, "requested": args.requested},
                                     "scale": args.scale.record()}, indent=2))
        log(f"results in {out}")
        return 0
    finally:
        stop_all(started, log)
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())

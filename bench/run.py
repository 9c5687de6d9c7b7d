#!/usr/bin/env python3
"""Benchmark: our proxy (litemaas-proxy) vs LiteLLM 1.81.0's proxy, side by side, against the same stub upstream.

Starts (all on 127.0.0.1, free ports, everything stopped again on exit or error):
  * the stub upstream (tests/support/stub_upstream.py),
  * PostgreSQL and Redis (tests/support/services.py) for our proxy,
  * our proxy: one worker, a real virtual key from /key/generate (RPM/TPM/budget set high enough not to trigger),
    so key auth, Redis limits and spend recording are all on,
  * LiteLLM 1.81.0's proxy (its own venv under .work/bench/litellm-venv, installed when missing): master key, no DB.
Then drives direct-to-stub, ours and LiteLLM with wrk (one thread, keep-alive, POST /v1/chat/completions) at each
concurrency, prints a table and the pass/fail against the bars, and writes JSON to .work/bench/results.json.

Run: .venv/bin/python bench/run.py [--quick] [--skip-litellm] [--duration S] [--warmup S] [--conc 1,16,64]

LITEMAAS_BENCH_SCALE (a number > 0, default 1) multiplies the measured seconds (at least 1 s per run) and the warm-up
(whole seconds, 0 = none) for a check that the script works; such a run says so and its speed bars are not judged.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import http.client
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.scale import BenchScale  # noqa: E402
from tests.support.services import PostgresServer, RedisServer, free_port, stop_all  # noqa: E402
from tests.support.stub_upstream import StubUpstream  # noqa: E402

LITELLM_VERSION = "1.81.0"
MASTER_KEY = "sk-bench-master-1234"
MODEL = "stub-model"
EMBED_MODEL = "stub-embed"
CHAT_BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, separators=(",", ":"))
# --request: (path, body). "chat" is the one the bars are defined on.
REQUESTS = {
    "chat": ("/v1/chat/completions", CHAT_BODY),
    "stream": ("/v1/chat/completions", json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}, separators=(",", ":"))),
    "embeddings": ("/v1/embeddings", json.dumps({"model": EMBED_MODEL, "input": "hi", "encoding_format": "float"}, separators=(",", ":"))),
    # The OpenAI Responses API and the Anthropic Messages API (each proxy relays them to the stub's own route or
    # translates them to chat completions; the stub answers both in vLLM's shapes).
    "responses": ("/v1/responses", json.dumps({"model": MODEL, "input": "hi"}, separators=(",", ":"))),
    "messages": ("/v1/messages", json.dumps({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, separators=(",", ":"))),
}
POST_LUA = Path(__file__).resolve().parent / "post.lua"

# The bars from the proxy's performance contract.
BAR_RPS_RATIO_C16 = 20.0  # our req/s at c=16 >= 20x LiteLLM's
BAR_ADDED_P50_C1_MS = 1.5  # our p50 minus direct p50 at c=1
BAR_RSS_MB = 120.0  # our RSS after load
BAR_READY_S = 2.0  # spawn -> first 200 on /health/liveliness

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- processes ------------------------------------------------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of a process tree in MB (10^6 bytes), from /proc/<pid>/statm."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except OSError:
            pass
    return total / 1e6


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return total / TICKS


class Proc:
    """A child process in its own session, stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict, cwd: Path, log_path: Path):
        self.name, self.argv, self.env, self.cwd, self.log_path = name, argv, env, cwd, log_path
        self.proc: subprocess.Popen | None = None
        self.spawned_at = 0.0

    def start(self) -> Proc:
        out = open(self.log_path, "ab")
        try:
            self.spawned_at = time.monotonic()
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=str(self.cwd), stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def http_call(port: int, method: str, path: str, body=None, key: str | None = None, timeout: float = 10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        try:
            return resp.status, json.loads(data)
        except ValueError:
            return resp.status, data.decode(errors="replace")
    finally:
        conn.close()


def wait_ready(proc: Proc, port: int, timeout: float) -> float:
    """Seconds from spawn to the first 200 on /health/liveliness (polled every 20 ms)."""
    deadline = proc.spawned_at + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited before it was ready:\n{proc.tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health/liveliness")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return time.monotonic() - proc.spawned_at
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{proc.name} not ready after {timeout}s:\n{proc.tail()}")


# ---- wrk ------------------------------------------------------------------------------------------------------------
def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk not found; installing it with apt-get")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which("wrk") or "/usr/bin/wrk"


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    res = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    res["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return res


def box_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / TICKS


def run_wrk(wrk: str, url: str, body: str, conc: int, seconds: float, key: str | None, watch: list[Proc]) -> dict:
    """One wrk run. CPU figures are % of one core over the run: each watched process tree, wrk itself, the whole
    machine ("box") and what is left for processes the benchmark did not start ("other": noise from other work)."""
    env = {**os.environ, "WRK_BODY": body, "WRK_AUTH": key or ""}
    argv = [wrk, "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "--latency", "-s", str(POST_LUA), url]
    cpu0 = {p.name: cpu_seconds(p.pid) for p in watch if p.alive()}
    box0 = box_busy_seconds()
    t0 = time.monotonic()
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        out.seek(0)
        text = out.read()
    if child.returncode != 0:
        raise RuntimeError(f"wrk failed ({child.returncode}): {text}")
    res = parse_wrk(text)
    cpu = {p.name: 100.0 * (cpu_seconds(p.pid) - cpu0[p.name]) / wall for p in watch if p.name in cpu0 and p.alive()}
    cpu["wrk"] = 100.0 * (usage.ru_utime + usage.ru_stime) / wall
    box = 100.0 * (box_busy_seconds() - box0) / wall
    res["cpu_pct"] = {k: round(v, 1) for k, v in cpu.items()}
    res["box_busy_pct"] = round(box, 1)
    res["other_cpu_pct"] = round(max(0.0, box - sum(cpu.values())), 1)
    res["cmd"] = " ".join(argv)
    return res


# ---- targets --------------------------------------------------------------------------------------------------------
def write_model_config(path: Path, stub_url: str) -> None:
    """A LiteLLM-style config.yaml (same file format for both proxies)."""
    path.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {stub_url}\n"
        "      api_key: sk-stub\n"
        "      input_cost_per_token: 0.000001\n"
        "      output_cost_per_token: 0.000002\n"
        "    model_info:\n"
        "      input_cost_per_token: 0.000001\n"
        "      output_cost_per_token: 0.000002\n"
        f"  - model_name: {EMBED_MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{EMBED_MODEL}\n"
        f"      api_base: {stub_url}\n"
        "      api_key: sk-stub\n"
        "      input_cost_per_token: 0.0000001\n"
        "    model_info:\n"
        "      mode: embedding\n"
        "      input_cost_per_token: 0.0000001\n"
        "general_settings:\n"
        f"  master_key: {MASTER_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )


def find_our_proxy(explicit: str | None) -> str:
    candidates = [explicit] if explicit else [
        str(REPO / ".venv/bin/litemaas-proxy"),
        str(Path(sys.executable).parent / "litemaas-proxy"),
        shutil.which("litemaas-proxy"),
    ]
    for c in candidates:
        if c and Path(c).exists():
            return c
    raise FileNotFoundError("litemaas-proxy not found: install it with `.venv/bin/pip install -e files/proxy` (or pass --proxy-bin)")


def ensure_litellm(venv: Path) -> Path:
    """Create ``venv`` with litellm[proxy]==1.81.0 unless it already has that version; return its litellm script.
    Two runs at once (two benchmarks, or a test beside one) install it once: the second waits for the first."""
    python = venv / "bin/python"
    script = venv / "bin/litellm"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and script.exists():
            probe = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"], capture_output=True, text=True)
            if probe.stdout.strip() == LITELLM_VERSION:
                return script
        log(f"installing litellm[proxy]=={LITELLM_VERSION} into {venv} (takes a few minutes)")
        base = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
    return script


def start_ours(args, work: Path, cfg: Path, pg: PostgresServer, redis: RedisServer) -> tuple[Proc, int, float, str]:
    binary = find_our_proxy(args.proxy_bin)
    port = free_port()
    dsn = pg.create_database("litemaas_bench")
    # The spend journal in the bench's own directory: a journal left in the shared default directory by another
    # proxy would be adopted by this one and written to the bench database (and this one's to another's).
    env = {**os.environ, "DATABASE_URL": dsn, "REDIS_URL": redis.url, "LITELLM_MASTER_KEY": MASTER_KEY, "LITEMAAS_SPILL_DIR": str(work / "spill")}
    proc = Proc("ours", [binary, "--host", "127.0.0.1", "--port", str(port), "--config", str(cfg), "--workers", "1"], env, work, work / "ours.log").start()
    ready = wait_ready(proc, port, args.ready_timeout)
    status, body = http_call(
        port, "POST", "/key/generate",
        {"models": [MODEL, EMBED_MODEL], "key_alias": "bench", "rpm_limit": 1_000_000_000, "tpm_limit": 1_000_000_000_000, "max_budget": 1_000_000_000.0},
        key=MASTER_KEY,
    )
    if status != 200 or not isinstance(body, dict) or not str(body.get("key", "")).startswith("sk-"):
        raise RuntimeError(f"/key/generate on our proxy failed: {status} {body}")
    return proc, port, ready, body["key"]


def start_litellm(args, work: Path, cfg: Path) -> tuple[Proc, int, float]:
    script = ensure_litellm(Path(args.litellm_venv))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    argv = [str(script), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    proc = Proc("litellm", argv, env, work, work / "litellm.log")
    proc.start()
    return proc, port, wait_ready(proc, port, 120)


def check_chat(name: str, port: int, key: str) -> None:
    status, body = http_call(port, "POST", "/v1/chat/completions", json.loads(CHAT_BODY), key=key, timeout=30)
    if status != 200 or not isinstance(body, dict) or not body.get("usage"):
        raise RuntimeError(f"{name}: chat completion failed: {status} {body}")


# ---- report ---------------------------------------------------------------------------------------------------------
def fmt(v, spec=",.1f", suffix=""):
    return "-" if v is None else f"{v:{spec}}{suffix}"


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def build_report(results: dict) -> tuple[str, dict, bool]:
    rows = results["runs"]
    lines = [results["scale"]["note"]] if results.get("scale", {}).get("scaled") else []
    hdr = (f"{'target':8} {'conc':>4} {'req/s':>11} {'p50 ms':>9} {'p99 ms':>9} {'+p50 ms':>9} {'+p99 ms':>9} {'errors':>7} "
           f"{'CPU% target':>11} {'pg+redis':>8} {'stub':>5} {'wrk':>5} {'other':>5}")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    direct = {r["conc"]: r for r in rows if r["target"] == "direct"}
    for r in rows:
        d = direct.get(r["conc"])
        add50 = None if r["target"] == "direct" or not d else r["p50_ms"] - d["p50_ms"]
        add99 = None if r["target"] == "direct" or not d else r["p99_ms"] - d["p99_ms"]
        r["added_p50_ms"], r["added_p99_ms"] = add50, add99
        c = r["cpu_pct"]
        cpu = c.get(r["target"] if r["target"] != "direct" else "stub")
        lines.append(
            f"{r['target']:8} {r['conc']:>4} {fmt(r['rps'], ',.0f'):>11} {fmt(r['p50_ms'], '.3f'):>9} {fmt(r['p99_ms'], '.3f'):>9} "
            f"{fmt(add50, '+.3f'):>9} {fmt(add99, '+.3f'):>9} {r['non_2xx'] + r['socket_errors']:>7} {fmt(cpu, '.0f'):>11} "
            f"{fmt(c.get('postgres', 0) + c.get('redis', 0), '.0f'):>8} {fmt(c.get('stub'), '.0f'):>5} {fmt(c.get('wrk'), '.0f'):>5} "
            f"{fmt(r.get('other_cpu_pct'), '.0f'):>5}"
        )
    lines.append("(CPU: % of one core during the measured run; other = machine load from processes this script did not start)")
    lines.append("")
    ours = {r["conc"]: r for r in rows if r["target"] == "ours"}
    lite = {r["conc"]: r for r in rows if r["target"] == "litellm"}
    if ours and lite:
        lines.append(f"{'conc':>4} {'req/s ours/LiteLLM':>19} {'p50 LiteLLM/ours':>17} {'p99 LiteLLM/ours':>17}")
        for c in sorted(set(ours) & set(lite)):
            o, lt = ours[c], lite[c]
            lines.append(f"{c:>4} {fmt(ratio(o['rps'], lt['rps']), ',.1f', 'x'):>19} {fmt(ratio(lt['p50_ms'], o['p50_ms']), ',.1f', 'x'):>17} "
                         f"{fmt(ratio(lt['p99_ms'], o['p99_ms']), ',.1f', 'x'):>17}")
        lines.append("")
    proc_info = results["processes"]
    lines.append(f"{'process':8} {'ready s':>8} {'RSS idle MB':>12} {'RSS after load MB':>18}")
    for name in ("ours", "litellm"):
        p = proc_info.get(name)
        if p:
            lines.append(f"{name:8} {fmt(p.get('ready_s'), '.2f'):>8} {fmt(p.get('rss_idle_mb'), '.1f'):>12} {fmt(p.get('rss_after_load_mb'), '.1f'):>18}")
    if proc_info.get("ours") and proc_info.get("litellm"):
        o, lt = proc_info["ours"], proc_info["litellm"]
        lines.append(f"{'ratio':8} {fmt(ratio(lt['ready_s'], o['ready_s']), '.1f', 'x'):>8} {fmt(ratio(lt['rss_idle_mb'], o['rss_idle_mb']), '.1f', 'x'):>12} "
                     f"{fmt(ratio(lt['rss_after_load_mb'], o['rss_after_load_mb']), '.1f', 'x'):>18}   (LiteLLM / ours)")
    lines.append("")

    bars = {}
    if ours:
        c16o, c16l = ours.get(16), lite.get(16)
        if c16o and c16l:
            r = ratio(c16o["rps"], c16l["rps"])
            bars["rps_c16_vs_litellm"] = {"value": r, "bar": f">= {BAR_RPS_RATIO_C16:g}x", "pass": r is not None and r >= BAR_RPS_RATIO_C16}
        else:
            bars["rps_c16_vs_litellm"] = {"value": None, "bar": f">= {BAR_RPS_RATIO_C16:g}x", "pass": None,
                                          "note": "not measured (needs c=16 runs of both proxies)"}
        c1 = ours.get(1)
        if c1 and c1.get("added_p50_ms") is not None:
            bars["added_p50_c1_ms"] = {"value": c1["added_p50_ms"], "bar": f"<= {BAR_ADDED_P50_C1_MS:g} ms", "pass": c1["added_p50_ms"] <= BAR_ADDED_P50_C1_MS}
        else:
            bars["added_p50_c1_ms"] = {"value": None, "bar": f"<= {BAR_ADDED_P50_C1_MS:g} ms", "pass": None, "note": "not measured (needs c=1)"}
        rss = proc_info["ours"].get("rss_after_load_mb")
        bars["rss_after_load_mb"] = {"value": rss, "bar": f"<= {BAR_RSS_MB:g} MB", "pass": rss is not None and rss <= BAR_RSS_MB}
        ready = proc_info["ours"].get("ready_s")
        bars["ready_s"] = {"value": ready, "bar": f"<= {BAR_READY_S:g} s", "pass": ready is not None and ready <= BAR_READY_S}
        errors = sum(r["non_2xx"] + r["socket_errors"] for r in ours.values())
        bars["no_errors"] = {"value": errors, "bar": "0 non-2xx / socket errors", "pass": errors == 0}
        if results.get("scale", {}).get("scaled"):  # a shorter run's speed and memory figures mean nothing
            for name, b in bars.items():
                if name != "no_errors":
                    b.update({"pass": None, "note": "not judged: scaled run"})
        kind = results["settings"].get("request_kind", "chat")
        lines.append("bars (our proxy):" if kind == "chat" else f"bars (our proxy; defined for --request chat, measured here with {kind}):")
        for name, b in bars.items():
            verdict = {True: "PASS", False: "FAIL", None: "n/a "}[b["pass"]]
            value = b["value"]
            shown = "-" if value is None else (f"{value:,.2f}" if isinstance(value, float) else str(value))
            lines.append(f"  {verdict}  {name:22} {shown:>12}   (bar {b['bar']}){'  ' + b['note'] if b.get('note') else ''}")
    failed = any(b["pass"] is False for b in bars.values())
    return "\n".join(lines), bars, failed


# ---- main -----------------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default 10)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds before each measured run (default 3)")
    p.add_argument("--conc", default="1,16,64", help="comma-separated concurrencies (default 1,16,64)")
    p.add_argument("--rounds", type=int, default=1, help="repeat the whole matrix N times; the table shows each row's median-req/s run")
    p.add_argument("--quick", action="store_true", help="short smoke run: 3 s runs, 1 s warm-up")
    p.add_argument("--request", choices=sorted(REQUESTS), default="chat",
                   help="request to drive: chat (default; the bars are defined on it), stream (SSE chat), embeddings, responses "
                        "(OpenAI Responses API) or messages (Anthropic Messages API)")
    p.add_argument("--skip-litellm", action="store_true", help="measure only direct and our proxy (no ratios)")
    p.add_argument("--skip-ours", action="store_true", help="measure only direct and LiteLLM (to check the harness)")
    p.add_argument("--proxy-bin", help="path of the litemaas-proxy executable (default: .venv, this Python's venv, PATH)")
    p.add_argument("--litellm-venv", default=str(REPO / ".work/bench/litellm-venv"))
    p.add_argument("--ready-timeout", type=float, default=60.0, help="give up on our proxy's start after this many seconds")
    p.add_argument("--out", default=str(REPO / ".work/bench/results.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    args.conc_list = [int(c) for c in args.conc.split(",") if c.strip()]
    args.scale = BenchScale.for_parser(p)
    args.requested = {"duration_s": args.duration, "warmup_s": args.warmup}
    if args.scale.scaled:
        args.duration = args.scale.seconds(args.duration, 1.0)
        args.warmup = float(round(args.scale.seconds(args.warmup, 0.0)))  # wrk runs whole seconds; 0: no warm-up
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.scale.scaled:
        log(args.scale.notice())
    wrk = ensure_wrk()
    work = REPO / ".work" / "bench" / f"run-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    started: list = []  # stopped in reverse order, whatever happens

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "concurrency": args.conc_list, "request_kind": args.request,
                     "request": {"path": REQUESTS[args.request][0], "body": json.loads(REQUESTS[args.request][1])},
                     "load_generator": subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.strip().splitlines()[0:1],
                     "litellm_version": None if args.skip_litellm else LITELLM_VERSION, "rounds": args.rounds,
                     "requested": args.requested},
        "scale": {**args.scale.record(), "empty_runs_repeated": 0},
        "processes": {},
        "runs": [],
    }
    try:
        if not args.skip_litellm:
            ensure_litellm(Path(args.litellm_venv))  # before anything runs: the install is slow
        stub = StubUpstream(log_path=work / "stub.log")
        stub.start()
        started.append(stub)
        log(f"stub upstream at {stub.url}")
        cfg = work / "config.yaml"
        write_model_config(cfg, stub.url)
        targets: list[tuple[str, int, str | None]] = [("direct", stub.port, None)]
        watch: list[Proc] = []
        stub_proc = Proc("stub", [], {}, work, work / "stub.log")
        stub_proc.proc = stub.proc
        watch.append(stub_proc)

        if not args.skip_ours:
            pg = PostgresServer(work / "pg").start()
            started.append(pg)
            redis = RedisServer(work / "redis").start()
            started.append(redis)
            for name, server in (("postgres", pg), ("redis", redis)):  # their CPU is attributed, not counted as "other"
                helper = Proc(name, [], {}, work, work / f"{name}.log")
                helper.proc = server.proc
                watch.append(helper)
            ours, port, ready, key = start_ours(args, work, cfg, pg, redis)
            started.append(ours)
            check_chat("ours", port, key)
            results["processes"]["ours"] = {"ready_s": ready, "rss_idle_mb": rss_mb(ours.pid), "pid": ours.pid}
            log(f"our proxy ready in {ready:.2f}s on port {port}")
            targets.append(("ours", port, key))
            watch.append(ours)
        if not args.skip_litellm:
            lite, lport, lready = start_litellm(args, work, cfg)
            started.append(lite)
            check_chat("litellm", lport, MASTER_KEY)
            results["processes"]["litellm"] = {"ready_s": lready, "rss_idle_mb": rss_mb(lite.pid), "pid": lite.pid}
            log(f"LiteLLM ready in {lready:.2f}s on port {lport}")
            targets.append(("litellm", lport, MASTER_KEY))
            watch.append(lite)

        path, body = REQUESTS[args.request]
        all_runs = results["all_runs"] = []
        for rnd in range(1, args.rounds + 1):
            for conc in args.conc_list:
                for name, port, key in targets:
                    url = f"http://127.0.0.1:{port}{path}"
                    if args.warmup > 0:
                        run_wrk(wrk, url, body, conc, args.warmup, key, watch)
                    res = run_wrk(wrk, url, body, conc, args.duration, key, watch)
                    if args.scale.scaled and res["requests"] == 0 and res["non_2xx"] + res["socket_errors"] == 0:
                        # A scaled run's window is short: a target that stalls that long completes nothing in it
                        # (and wrk counts the request still in flight as no error). Measure the cell once more.
                        log(f"round {rnd} {name} c={conc}: no request completed in the scaled {args.duration:g} s run; measuring it again")
                        results["scale"]["empty_runs_repeated"] += 1
                        res = run_wrk(wrk, url, body, conc, args.duration, key, watch)
                    res.update(target=name, conc=conc, round=rnd)
                    all_runs.append(res)
                    log(f"round {rnd} {name:8} c={conc:<3} {res['rps']:>10,.0f} req/s  p50 {res['p50_ms']:.3f} ms  p99 {res['p99_ms']:.3f} ms  "
                        f"errors {res['non_2xx'] + res['socket_errors']}  other CPU {res['other_cpu_pct']:.0f}%")
        # Per (target, concurrency) the run with the median req/s across rounds (the only run when --rounds 1).
        for conc in args.conc_list:
            for name, _port, _key in targets:
                runs = sorted((r for r in all_runs if r["target"] == name and r["conc"] == conc), key=lambda r: r["rps"])
                results["runs"].append(runs[(len(runs) - 1) // 2])
        for p in watch:
            if p.name in results["processes"]:
                results["processes"][p.name]["rss_after_load_mb"] = rss_mb(p.pid)
        if "ours" in results["processes"]:
            status, info = http_call(targets[1][1], "GET", f"/key/info?key={targets[1][2]}", key=MASTER_KEY)
            spend = (info.get("info") or {}).get("spend") if isinstance(info, dict) else None
            results["processes"]["ours"]["key_spend_after_load"] = spend
            log(f"our proxy: key spend after load = {spend} (status {status})")

        report, bars, failed = build_report(results)
        results["bars"] = bars
        print(report)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        log(f"results written to {out}")
        return 1 if failed else 0
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc})")
        return 130
    except Exception as exc:
        log(f"benchmark failed: {exc!r}")
        raise
    finally:
        stop_all(started, log)
        shutil.rmtree(work / "pg" / "pgdata", ignore_errors=True)  # logs stay in the run directory
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())

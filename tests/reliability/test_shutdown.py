"""Shutdown always ends: SIGTERM under load with PostgreSQL (and Redis) gone exits within the shutdown budget,
the spend the database did not get is in the spill directory, and the next start replays it.

"Gone" three ways: stopped with Redis (connections refused at once), frozen (SIGSTOP: connections open but nothing
answers, as when the database's node stops responding), and frozen together with Redis. The exit-time check is a generous deadline derived from the
documented budget, not a speed measurement.
"""

from __future__ import annotations

import glob
import os
import signal
import socket
import subprocess
import sys
import time
import types

import pytest

from litemaas_proxy import cli
from tests.proxy.conftest import new_key, uid, wait_for
from tests.reliability.conftest import Load, assert_spend_matches
from tests.support.proxy import INPUT_COST, OUTPUT_COST, PROXY_SRC, ProxyProcess, http_json, stub_models
from tests.support.services import free_port

FLUSH_TIMEOUT = 2.0
# The proxy's own budget (startup, drain, the final flush, the closing steps; past it a worker ends itself with
# SHUTDOWN_OVERRAN_STATUS), and a few seconds on top for the interpreter to exit on a busy machine.
BUDGET = cli.shutdown_budget(types.SimpleNamespace(shutdown_flush_timeout=FLUSH_TIMEOUT)) + 5


def process_tree(pid: int) -> list:
    """``pid`` and its descendants (PostgreSQL's children each start their own process group: killpg misses them)."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def signal_tree(pids: list, signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def spill_records(spill_dir) -> int:
    count = 0
    for path in glob.glob(os.path.join(spill_dir, "litemaas-spend-*.jsonl")):
        with open(path) as fh:
            count += sum(1 for line in fh if line.strip())
    return count


@pytest.mark.parametrize("how", ["stopped", "frozen", "frozen with Redis"])
def test_sigterm_with_the_database_gone_exits_within_the_budget_and_spills(proxy_factory, own_pg, own_redis, stub_upstream, how):
    dsn = own_pg.create_database("litellm_db")
    slow = {"model_name": "slow-model", "litellm_params": {"model": "openai/stub-model-delay-1000ms", "api_base": stub_upstream.url,
                                                           "api_key": "sk-upstream", "input_cost_per_token": INPUT_COST,
                                                           "output_cost_per_token": OUTPUT_COST},
            "model_info": {"id": "slow-dep", "mode": "chat"}}
    # Keys stay cached (and served stale) through the outage; spend is flushed often, so what is left at SIGTERM is
    # exactly what the database could not take.
    env = {"LITEMAAS_KEY_CACHE_TTL": "600", "LITEMAAS_SHUTDOWN_FLUSH_TIMEOUT": str(FLUSH_TIMEOUT), "LITEMAAS_SPEND_FLUSH_INTERVAL": "0.2"}
    p = proxy_factory(dsn=dsn, redis_url=own_redis.url, models=stub_models(stub_upstream.url) + [slow], env=env)
    # With Redis frozen too, the load uses keys without limits: those never wait for Redis (limited ones would wait
    # for its timeout on every request); the proxy's own Redis connections (pub/sub) still have to be closed.
    limits = {} if "Redis" in how else {"rpm_limit": 1_000_000}
    keys = [new_key(p, key_alias=uid("down"), **limits) for dummy in range(2)]
    slow_key = new_key(p, key_alias=uid("slow"))
    fast = Load(p.url, keys, threads=2).start()
    slow_load = Load(p.url, [slow_key], model="slow-model", threads=3, pause=0).start()
    frozen = []
    try:
        fast.wait_more(20, "load before the outage", status="200")
        slow_load.wait_more(3, "slow requests before the outage", status="200")
        if how == "stopped":
            own_pg.stop()
            own_redis.stop()
        else:
            frozen = process_tree(own_pg.proc.pid)  # the postmaster and every backend
            if "Redis" in how:
                frozen += process_tree(own_redis.proc.pid)
            signal_tree(frozen, signal.SIGSTOP)
        fast.wait_more(20, "load while the database is gone", status="200")
        proc = p.proc
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=BUDGET + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"the proxy did not exit within {BUDGET + 60:.0f}s of SIGTERM; log:\n{p.log_tail()}") from None
        elapsed = time.monotonic() - started
    finally:
        fast.stop()
        slow_load.stop()
        signal_tree(frozen, signal.SIGCONT)
    p.proc = None
    assert code == 0, p.log_tail()
    assert elapsed < BUDGET, f"exit took {elapsed:.1f}s, budget {BUDGET:.0f}s; log:\n{p.log_tail()}"
    for load in (fast, slow_load):
        assert not load.bad, load.bad[:3]
        assert set(load.statuses) <= {"200", "conn"}, load.statuses
    # What the database did not get is on disk.
    spilled = spill_records(p.spill_dir)
    assert spilled > 0, p.log_tail()
    assert "spend records written to" in p.log_tail(200)
    # The next start (database back) replays it: the database then holds exactly what the clients got, and the spill is gone.
    if how == "stopped":
        own_pg.start()
        own_redis.start()
    p.start()
    wait_for(lambda: not glob.glob(os.path.join(p.spill_dir, "litemaas-spend-*")), timeout=60, interval=0.2, message="spill replayed and removed")
    assert p.terminate() == 0
    assert_spend_matches(dsn, fast.usage, keys)
    assert_spend_matches(dsn, slow_load.usage, [slow_key])


# ---------------------------------------------------------------- a stop at any moment of startup

def handles(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has its own handler for ``signum`` (the SigCgt mask in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def ready(port: int) -> bool:
    try:
        return http_json("GET", f"http://127.0.0.1:{port}/health/readiness", timeout=1)[0] == 200
    except OSError:
        return False


# Moments of startup, each reached by watching the process, not by sleeping: the proxy's signal handlers are in place
# (nothing forked or served yet), every worker is forked, the port accepts connections, the database is connected.
MOMENTS = {
    "handlers": lambda proc, port, workers: handles(proc.pid, signal.SIGTERM),
    "forked": lambda proc, port, workers: len(process_tree(proc.pid)) > workers,
    "listening": lambda proc, port, workers: listening(port),
    "ready": lambda proc, port, workers: ready(port),
}


# Each moment at once and 150 ms later. A stop at once after the handlers are in place usually reaches the parent
# while it is forking; it is repeated because a stop forwarded into a worker's fork is lost only now and then
# (about one run in five before the fix).
STARTUP_MOMENTS = {1: ("handlers", "listening", "ready"), 2: ("handlers", "forked", "listening", "ready")}
STARTUP_STOPS = [(workers, moment, after) for workers, moments in STARTUP_MOMENTS.items() for moment in moments for after in (0.0, 0.15)]
STARTUP_STOPS += [(2, "handlers", 0.0)] * 4


@pytest.mark.parametrize("workers, moment, after", STARTUP_STOPS)
def test_a_stop_at_any_moment_of_startup_ends_the_proxy_gracefully(proxy, tmp_path, workers, moment, after):
    # Two ways a stop used to be lost, leaving a worker serving and the proxy never exiting: forwarded to a worker
    # still inside its fork (dropped), or raised as an exception into a worker's startup (swallowed there).
    # Every worker must stop, once, and the proxy exit 0 within its budget.
    p = ProxyProcess(proxy.dsn, None, work_dir=tmp_path, workers=workers)
    proc = p.spawn(free_port())
    try:
        wait_for(lambda: proc.poll() is not None or MOMENTS[moment](proc, p.port, workers), timeout=60, interval=0.005,
                 message=f"proxy startup: {moment}")
        assert proc.poll() is None, p.log_tail()
        time.sleep(after)
        tree = process_tree(proc.pid)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=BUDGET + 30)
        elapsed = time.monotonic() - started
    except subprocess.TimeoutExpired:
        signal_tree(process_tree(proc.pid), signal.SIGKILL)
        raise AssertionError(f"the proxy did not exit within {BUDGET + 30:.0f}s of SIGTERM ({moment}); log:\n{p.log_tail()}") from None
    finally:
        p.kill()
    log = p.log_tail(200)
    assert code == 0, log
    assert elapsed < BUDGET, f"exit took {elapsed:.1f}s, budget {BUDGET:.0f}s; log:\n{log}"
    assert log.count("SIGTERM received: stopping") == workers, log
    assert "past the shutdown budget" not in log
    for pid in tree:
        assert not os.path.exists(f"/proc/{pid}"), f"process {pid} of the proxy outlived it"


def test_a_worker_still_running_past_its_budget_ends_itself():
    # The last line of defence: whatever keeps a stop from ending, the process is gone once its budget has passed,
    # with a distinct exit status and a line saying why (the kubelet would otherwise wait for its grace period).
    script = ("import logging, signal, sys, time\n"
              "from litemaas_proxy import cli\n"
              "logging.basicConfig(stream=sys.stderr)\n"
              "cli._Lifecycle(budget=1.0, backlog=128).stop(signal.SIGTERM)\n"
              "time.sleep(60)\n")
    res = subprocess.run([sys.executable, "-c", script], cwd=str(PROXY_SRC), capture_output=True, text=True, timeout=50, check=False)
    assert res.returncode == cli.SHUTDOWN_OVERRAN_STATUS, res.stderr
    assert "still running 1s after the stop signal, past the shutdown budget: exiting now" in res.stderr

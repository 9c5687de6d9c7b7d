"""The pod's numbers: this process's snapshot, the merge of every worker's snapshot, and the link between the
workers of one proxy (an abstract Unix socket each; see the package's docstring)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from typing import Optional

import orjson

from litemaas_proxy.metrics.counting import COUNTERS, HISTOGRAMS, bump

log = logging.getLogger("litemaas_proxy.metrics")

PEER_TIMEOUT = 2.0  # seconds a scrape waits for another worker's numbers

# How the pod's value of each process-level gauge is made from its workers' values.
GAUGES = {
    "litellm_in_memory_spend_update_queue_size": sum,  # records waiting in any worker wait in the pod
    "litemaas_spend_records_on_disk": sum,  # likewise those held only in a journal on disk
}
DEPLOYMENT_STATE = max  # a deployment cooling down in one worker is reported as cooling down
DEPLOYMENT_IN_FLIGHT = sum


@dataclass(frozen=True)
class Worker:
    """This process's place among the workers of one proxy (``cli.main`` makes one per forked worker)."""

    group: str
    index: int
    count: int

    def address(self, index: int) -> str:
        return f"\0litemaas-metrics-{self.group}-{index}"


def worker_group() -> str:
    """An id shared by the workers of one proxy process (the parent's pid and a random part)."""
    return f"{os.getpid()}-{os.urandom(4).hex()}"


def _rows(store: dict) -> list:
    return [[list(k) if isinstance(k, tuple) else k, v] for k, v in list(store.items())]


def local_snapshot(proxy) -> dict:
    """This process's numbers as plain JSON-able data."""
    deployments = []
    fallbacks_ok: list = []
    fallbacks_bad: list = []
    router = proxy.router
    for dep in list(router.by_id.values()):
        st = dep.state
        deployments.append([[dep.model_name, dep.id, dep.upstream_model, dep.api_base, dep.provider], 2 if st.cooling() else 0, st.in_flight,
                            st.requests, st.successes, st.cooldowns, dict(st.errors)])
    fallbacks_ok = [[list(k), n] for k, n in list(router.fallback_successes.items())]
    fallbacks_bad = [[list(k), n] for k, n in list(router.fallback_failures.items())]
    lookups = getattr(proxy, "lookups", None)
    return {
        "counters": {name: _rows(store) for name, store in COUNTERS.items()},
        "histograms": {name: _rows(store) for name, store in HISTOGRAMS.items()},
        "deployments": deployments, "fallbacks_ok": fallbacks_ok, "fallbacks_bad": fallbacks_bad,
        "lookups": [lookups.lookups, lookups.batches] if lookups is not None else [0, 0],
        "gauges": {"litellm_in_memory_spend_update_queue_size": proxy.spend.pending_records,
                   "litemaas_spend_records_on_disk": proxy.spend.on_disk_records},
    }


def _key(k):
    return tuple(k) if isinstance(k, list) else k


def merge(snapshots: list, live: list) -> dict:
    """The pod's numbers from each worker's snapshot. ``live[i]`` is false for a worker that did not answer this time
    (its counters are kept from its last answer, its gauges are left out)."""
    counters: dict = {name: {} for name in COUNTERS}
    histograms: dict = {name: {} for name in HISTOGRAMS}
    deployments: dict = {}
    fb_ok: dict = {}
    fb_bad: dict = {}
    lookups = [0, 0]
    gauges: dict = {name: [] for name in GAUGES}
    for snap, alive in zip(snapshots, live):
        for name, rows in snap["counters"].items():
            store = counters.setdefault(name, {})
            for k, v in rows:
                bump(store, _key(k), v)
        for name, rows in snap["histograms"].items():
            store = histograms.setdefault(name, {})
            for k, row in rows:
                have = store.get(k)
                store[k] = list(row) if have is None else [a + b for a, b in zip(have, row)]
        for labels, state, in_flight, requests, successes, cooldowns, errors in snap["deployments"]:
            d = deployments.get(tuple(labels))
            if d is None:
                d = deployments[tuple(labels)] = {"state": [], "in_flight": [], "requests": 0, "successes": 0, "cooldowns": 0, "errors": {}}
            if alive:
                d["state"].append(state)
                d["in_flight"].append(in_flight)
            d["requests"] += requests
            d["successes"] += successes
            d["cooldowns"] += cooldowns
            for reason, n in errors.items():
                bump(d["errors"], reason, n)
        for k, n in snap["fallbacks_ok"]:
            bump(fb_ok, tuple(k), n)
        for k, n in snap["fallbacks_bad"]:
            bump(fb_bad, tuple(k), n)
        lookups[0] += snap["lookups"][0]
        lookups[1] += snap["lookups"][1]
        if alive:
            for name, value in snap["gauges"].items():
                gauges.setdefault(name, []).append(value)
    for d in deployments.values():
        d["state"] = DEPLOYMENT_STATE(d["state"]) if d["state"] else 0
        d["in_flight"] = DEPLOYMENT_IN_FLIGHT(d["in_flight"])
    return {"counters": counters, "histograms": histograms, "deployments": deployments, "fallbacks_ok": fb_ok, "fallbacks_bad": fb_bad,
            "lookups": lookups, "gauges": {name: GAUGES.get(name, sum)(values) for name, values in gauges.items()}}


class MetricsState:
    """Per application: the proxy, the label settings, and the link to the other workers."""

    def __init__(self, proxy, worker: Optional[Worker]):
        self.proxy = proxy
        self.key_alias = bool(proxy.settings.metrics_key_alias)
        self.worker = worker
        self.server = None
        self.last: dict = {}  # worker index -> its last snapshot

    async def start(self) -> None:
        if self.worker is None or self.worker.count <= 1:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.worker.address(self.worker.index))
        self.server = await asyncio.start_unix_server(self._serve_peer, sock=sock)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _serve_peer(self, reader, writer) -> None:
        try:
            writer.write(orjson.dumps(local_snapshot(self.proxy)))
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def _ask(self, index: int):
        # Connected by hand: uvloop's open_unix_connection() refuses abstract names (OSError 22).
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, self.worker.address(index))
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        try:
            return orjson.loads(await reader.read())
        finally:
            writer.close()

    async def pod_snapshot(self) -> dict:
        own = local_snapshot(self.proxy)
        if self.server is None:
            return merge([own], [True])
        others = [i for i in range(self.worker.count) if i != self.worker.index]
        results = await asyncio.gather(*(asyncio.wait_for(self._ask(i), PEER_TIMEOUT) for i in others), return_exceptions=True)
        snapshots, live = [own], [True]
        for index, result in zip(others, results):
            if isinstance(result, dict):
                self.last[index] = result
                snapshots.append(result)
                live.append(True)
            else:
                log.warning("worker %d did not report its metrics (%s: %s)%s", index, type(result).__name__, result,
                            "; its last counters are used" if index in self.last else "")
                if index in self.last:
                    snapshots.append(self.last[index])
                    live.append(False)
        return merge(snapshots, live)

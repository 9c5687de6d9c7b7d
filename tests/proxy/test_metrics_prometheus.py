"""A real Prometheus (Debian's package) scraping a 2-worker proxy under mixed traffic: what it stores per status is
exactly what the clients received (successes, streams, 401 bad keys, 400 unknown models, 429 rate limits, 503 upstream
failures), although its kept-open scrape connection always lands on the same worker."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from tests.proxy.conftest import INPUT_COST, OUTPUT_COST, chat, new_key, uid, wait_for
from tests.proxy.test_metrics import _worker_snapshots, _worker_sockets
from tests.support.proxy import http_json
from tests.support.services import free_port

NS = "team-ai"


@pytest.fixture(scope="module")
def two_workers(proxy_factory, stub_upstream):
    models = [{"model_name": m, "litellm_params": {"model": f"openai/{up}", "api_base": stub_upstream.url, "input_cost_per_token": INPUT_COST,
                                                   "output_cost_per_token": OUTPUT_COST}}
              for m, up in (("metered", "stub-model"), ("broken", "broken-fail-503"))]
    p = proxy_factory(database=uid("prom").replace("-", "_"), models=models, workers=2)
    # Ready means one worker answers; on a busy machine the second may still be starting.
    wait_for(lambda: len(_worker_sockets(p)) == 2, timeout=60, message="both workers' metrics sockets")
    return p


@pytest.fixture(scope="module")
def prometheus(two_workers, work_dir):
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: scripts/lib.sh installs Debian's prometheus package"
    root = work_dir / f"prometheus-{uid()}"
    root.mkdir()
    target = {"targets": [f"127.0.0.1:{two_workers.port}"], "labels": {"namespace": NS}}
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "litellm", "static_configs": [target]}]}
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with open(root / "prometheus.log", "wb") as log:
        proc = subprocess.Popen([binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), timeout=60, message="prometheus ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def query(url: str, expr: str) -> list:
    with urllib.request.urlopen(url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10) as resp:
        data = json.loads(resp.read())
    assert data["status"] == "success", data
    return data["data"]["result"]


def by_status(url: str) -> dict:
    return {r["metric"]["status_code"]: int(float(r["value"][1]))
            for r in query(url, 'sum by (status_code) (litellm_proxy_total_requests_metric_total{job="litellm"})')}


def test_prometheus_counts_what_the_clients_received(two_workers, prometheus):
    p = two_workers
    key = new_key(p)
    limited = new_key(p, rpm_limit=3)

    def one(i: int) -> int:
        kind = i % 6
        if kind == 0:
            return chat(p, "sk-guessed-" + str(i), model="metered")[0]
        if kind == 1:
            return chat(p, key, model="no-such-model")[0]
        if kind == 2:
            return chat(p, limited, model="metered")[0]
        if kind == 3:
            return chat(p, key, model="broken")[0]
        if kind == 4:
            return http_json("POST", p.url + "/v1/chat/completions", {"model": "metered", "stream": True,
                                                                      "messages": [{"role": "user", "content": "x"}]},
                             {"Authorization": f"Bearer {key}"})[0]
        return chat(p, key, model="metered")[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(240)))
    sent: dict = {}
    for s in statuses:
        sent[str(s)] = sent.get(str(s), 0) + 1
    # What the clients got: 40 unknown keys, 40 unknown models, 3 allowed + 37 limited, 40 upstream failures, 80 answers.
    assert sent == {"401": 40, "400": 40, "429": 37, "503": 40, "200": 83}
    stored = wait_for(lambda: by_status(prometheus) == sent and by_status(prometheus), timeout=60, message=f"Prometheus to store {sent}")
    assert stored == sent
    assert query(prometheus, 'count(up{job="litellm"} == 1)')[0]["value"][1] == "1"  # one target: the pod
    served = [sum(n for dummy, n in w["counters"]["requests"]) for w in _worker_snapshots(p)]
    assert len(served) == 2 and min(served) > 0 and sum(served) == 240, served  # both workers answered clients
    failed = {r["metric"]["status_code"]: int(float(r["value"][1]))
              for r in query(prometheus, "sum by (status_code) (litellm_proxy_failed_requests_metric_total)")}
    assert failed == {"401": 40, "400": 40, "429": 37, "503": 40}
    rejected = query(prometheus, 'sum(litemaas_rate_limit_rejections_total{limit_type="requests"})')
    assert rejected[0]["value"][1] == "37"
    models = {r["metric"]["requested_model"] for r in query(prometheus, "litellm_proxy_total_requests_metric_total")}
    assert models == {"None", "metered", "broken"}

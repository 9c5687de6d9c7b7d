"""kill -9 at random moments: no answered request's spend is lost or counted twice, and the parallel slots a killed
proxy held come back within the lease TTL.

Every request carries a unique ``user`` (stored as ``end_user`` in its spend row), so each answer the clients got is
matched to its row: zero missing, zero duplicates, no row for a request that got an error answer; a request whose
answer never arrived (the proxy died under it) may have a row or not. Proxies are killed as a container is on
OpenShift (SIGKILL to every process of the proxy) and started again on the same journal directory, one of them
alternately with 2 and 1 worker processes (so the journal of a worker that no longer exists must be adopted).
The random moments come from a seed that the test prints (``LITEMAAS_KILL_SEED`` repeats a run).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import threading
import time
import uuid

import psycopg2

from tests.proxy.conftest import new_key, uid, wait_for
from tests.support.proxy import INPUT_COST, OUTPUT_COST, http_json, stub_models

SEED = int(os.environ.get("LITEMAAS_KILL_SEED") or random.SystemRandom().randrange(1 << 30))
TOKEN = min(INPUT_COST, OUTPUT_COST)


class Clients:
    """Closed-loop clients over several proxies; every request has a unique ``user``. ``answered``: user -> (key,
    prompt, completion) of the 200s with usage; ``errors``: users answered with an error; ``unknown``: users whose
    request got no complete answer (connection reset or closed by the killed proxy)."""

    def __init__(self, proxies: list, keys: list, threads: int = 6, seed: int = 0):
        self.proxies = proxies
        self.keys = keys
        self.threads = threads
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.answered: dict = {}
        self.errors: dict = {}
        self.unknown: set = set()
        self.bad: list = []
        self._stop = threading.Event()
        self._threads: list = []

    def start(self) -> Clients:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=70)

    def count(self) -> int:
        with self.lock:
            return len(self.answered)

    def _one(self, conn, key: str, user: str, stream: bool):
        body = {"model": "stub-model", "messages": [{"role": "user", "content": " ".join(["w"] * self.rng.randint(1, 30))}],
                "max_tokens": self.rng.randint(1, 24), "user": user}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            return resp.status, json.loads(raw)
        if not stream:
            return 200, json.loads(raw).get("usage")
        events = [line[5:].strip() for line in raw.split(b"\n") if line.startswith(b"data:")]
        if not events or events[-1] != b"[DONE]":
            raise http.client.IncompleteRead(raw)  # a stream cut short is no answer
        usage = [json.loads(e)["usage"] for e in events[:-1] if b'"usage"' in e and json.loads(e).get("usage")]
        return 200, usage[-1] if usage else None

    def _run(self, index: int) -> None:
        conns: dict = {}
        n = 0
        while not self._stop.is_set():
            n += 1
            proxy = self.proxies[(index + n) % len(self.proxies)]
            key = self.keys[(index * 7 + n) % len(self.keys)]
            user = f"u-{index}-{n}-{uuid.uuid4().hex[:8]}"
            conn = conns.get(proxy.url)
            if conn is None:
                conn = conns[proxy.url] = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
            try:
                status, data = self._one(conn, key, user, stream=n % 5 == 0)
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conns.pop(proxy.url, None)
                with self.lock:
                    self.unknown.add(user)
                time.sleep(0.02)
                continue
            with self.lock:
                if status == 200 and isinstance(data, dict):
                    self.answered[user] = (key, int(data["prompt_tokens"]), int(data["completion_tokens"]))
                elif status == 200:
                    self.bad.append((user, data))
                else:
                    self.errors[user] = status
        for conn in conns.values():
            conn.close()


def kill_group(proxy) -> None:
    """SIGKILL to every process of the proxy (it runs in its own session, as in a container) and reap it."""
    proc, proxy.proc = proxy.proc, None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def restart(proxy, workers: int, ready: bool = True) -> None:
    proxy.workers = workers
    proxy._fixed_port = proxy.port  # the clients keep their address, as a Service does
    proxy.start(timeout=60, wait_ready=ready)


def spend_rows(dsn: str) -> tuple:
    """(end_user -> [(api_key, prompt, completion, spend)] of the successful spend rows, token -> key spend)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT end_user, api_key, prompt_tokens, completion_tokens, spend FROM "LiteLLM_SpendLogs" WHERE status = %s', ("success",))
            out: dict = {}
            for user, api_key, prompt, completion, spend in cur.fetchall():
                out.setdefault(user, []).append((api_key, prompt, completion, spend))
            cur.execute('SELECT token, spend FROM "LiteLLM_VerificationToken"')
            return out, dict(cur.fetchall())
    finally:
        conn.close()


def where_missing_went(missing: list, proxies: list) -> str:
    """For a failure message: how many of the missing requests are still in a journal file, and what the proxies
    logged about spend (flush failures, replays, shutdown)."""
    left, lines = 0, []
    wanted = set(missing)
    for proxy in proxies:
        for path in sorted(proxy.spill_dir.glob("*")):
            text = path.read_text(errors="replace")
            here = sum(1 for user in wanted if user in text)
            left += here
            lines.append(f"{path.name}: {text.count(chr(10))} lines, {here} of the missing")
        log = proxy.log_path.read_text(errors="replace").splitlines() if proxy.log_path.exists() else []
        lines += [f"{proxy.port}: {line[:300]}" for line in log if "spend" in line.lower() and ("WARN" in line or "ERROR" in line or "journal" in line)][-40:]
    return f"{left} of them still in journal files\n" + "\n".join(lines)


def assert_each_answer_charged_once(dsn: str, clients: Clients, proxies: list = ()) -> dict:
    import hashlib

    rows, key_spend = spend_rows(dsn)
    duplicates = {user: r for user, r in rows.items() if len(r) > 1}
    assert not duplicates, f"{len(duplicates)} requests charged more than once, e.g. {next(iter(duplicates.items()))}"
    missing = [user for user in clients.answered if user not in rows]
    assert not missing, (f"{len(missing)} of {len(clients.answered)} answered requests have no spend row (seed {SEED}), e.g. {missing[:3]}; "
                         + where_missing_went(missing, list(proxies)))
    for user, (key, prompt, completion) in clients.answered.items():
        api_key, got_prompt, got_completion, spend = rows[user][0]
        assert (api_key, got_prompt, got_completion) == (hashlib.sha256(key.encode()).hexdigest(), prompt, completion), user
        assert abs(spend - (prompt * INPUT_COST + completion * OUTPUT_COST)) < TOKEN / 2, user
    charged_errors = [user for user in clients.errors if user in rows]
    assert not charged_errors, f"requests answered with an error were charged: {charged_errors[:3]}"
    strangers = set(rows) - set(clients.answered) - clients.unknown
    assert not strangers, f"spend rows for requests never sent: {sorted(strangers)[:3]}"
    # Key spend is the sum of its rows: a replayed record neither added a row nor spend.
    per_key: dict = {}
    for r in rows.values():
        per_key[r[0][0]] = per_key.get(r[0][0], 0.0) + r[0][3]
    for token, total in per_key.items():
        assert abs(key_spend[token] - total) < TOKEN / 2, f"key {token[:12]}: spend {key_spend[token]!r} != its rows {total!r}"
    return {"answered": len(clients.answered), "unknown": len(clients.unknown), "unknown_charged": len(clients.unknown & set(rows)),
            "errors": len(clients.errors), "tokens": sum(p + c for dummy, p, c in clients.answered.values())}


def test_kill_9_at_random_moments_under_load_loses_no_answered_spend(proxy_factory, own_pg, own_redis, stub_upstream):
    rng = random.Random(SEED)
    print(f"kill -9 seed: {SEED}")
    dsn = own_pg.create_database("litellm_db")
    env = {"LITEMAAS_SPEND_FLUSH_INTERVAL": "1"}  # the production default: kills land between flushes
    a = proxy_factory(dsn=dsn, redis_url=own_redis.url, env=env, workers=2)
    b = proxy_factory(dsn=dsn, redis_url=own_redis.url, env=env)
    keys = [new_key(a, key_alias=uid("kill"), rpm_limit=100000, max_parallel_requests=1000) for dummy in range(8)]
    clients = Clients([a, b], keys, seed=SEED).start()
    kills = 0
    try:
        clients_before = clients.count()
        wait_for(lambda: clients.count() > clients_before + 50, timeout=60, message="load running")
        for i in range(6):
            time.sleep(rng.uniform(0.2, 1.6))
            victim = rng.choice([a, b])
            kill_group(victim)
            kills += 1
            restart(victim, workers=(1 + i % 2) if victim is a else 1)
            mark = clients.count()
            wait_for(lambda m=mark: clients.count() > m + 20, timeout=60, message="load after the restart")
        # Inside a PostgreSQL outage: cached keys keep being answered, the spend waits; then both proxies die.
        own_pg.stop()
        mark = clients.count()
        wait_for(lambda: clients.count() > mark + 100, timeout=60, message="answers during the outage")
        time.sleep(rng.uniform(0.0, 1.0))
        in_outage = clients.count() - mark
        kill_group(a)
        kill_group(b)
        kills += 2
        restart(a, workers=2, ready=False)
        restart(b, workers=1, ready=False)
        own_pg.start()
        wait_for(lambda: a.wait(1) and b.wait(1), timeout=60, message="proxies ready after the outage")
        mark = clients.count()
        wait_for(lambda: clients.count() > mark + 50, timeout=60, message="load after the outage")
    finally:
        clients.stop()
    assert a.terminate() == 0 and b.terminate() == 0
    assert not clients.bad, clients.bad[:3]
    figures = assert_each_answer_charged_once(dsn, clients, [a, b])
    assert in_outage >= 100 and figures["answered"] > 500
    print(f"kill -9: {kills} kills, {figures}, answered during the outage before the kill: {in_outage}")
    for proxy in (a, b):
        assert not [n for n in os.listdir(proxy.spill_dir) if n.startswith("litemaas-spend-")], "journal left after a clean stop"


def metric(proxy, name: str) -> float:
    status, text, dummy = http_json("GET", proxy.url + "/metrics")
    assert status == 200
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_a_long_outage_keeps_spend_on_disk_beyond_the_memory_cap_and_a_kill_loses_none(proxy_factory, own_pg, own_redis, stub_upstream):
    dsn = own_pg.create_database("litellm_db")
    cap = 8  # records in memory; segments of cap // 4 = 2 records; at most cap + 2 segments in memory
    p = proxy_factory(dsn=dsn, redis_url=own_redis.url, env={"LITEMAAS_SPEND_MEMORY_MAX": str(cap), "LITEMAAS_SPEND_FLUSH_INTERVAL": "0.2"})
    key = new_key(p, key_alias=uid("cap"))
    users = []

    def send() -> None:
        user = uid("cap-user")
        status, data, dummy = http_json("POST", p.url + "/v1/chat/completions",
                                        {"model": "stub-model", "messages": [{"role": "user", "content": "one two"}], "max_tokens": 5, "user": user},
                                        {"Authorization": f"Bearer {key}"})
        assert status == 200 and data["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}, data
        users.append(user)

    send()
    wait_for(lambda: metric(p, "litellm_in_memory_spend_update_queue_size") == 0, message="first request written")
    own_pg.stop()
    for dummy in range(40):
        send()
    pending = metric(p, "litellm_in_memory_spend_update_queue_size")
    on_disk = metric(p, "litemaas_spend_records_on_disk")
    assert pending == 40
    assert pending - on_disk <= cap + 2 * 2, (pending, on_disk)
    kill_group(p)
    restart(p, workers=1, ready=False)
    assert metric(p, "litellm_in_memory_spend_update_queue_size") == 40  # adopted from the journal, not read yet
    own_pg.start()
    wait_for(lambda: p.wait(1), timeout=60, message="ready after the outage")
    wait_for(lambda: metric(p, "litellm_in_memory_spend_update_queue_size") == 0, timeout=60, message="journal replayed")
    rows, key_spend = spend_rows(dsn)
    assert sorted(rows) == sorted(users) and all(len(r) == 1 and r[0][1:3] == (2, 5) for r in rows.values())
    assert abs(sum(key_spend.values()) - 41 * (2 * INPUT_COST + 5 * OUTPUT_COST)) < TOKEN / 2
    assert not [n for n in os.listdir(p.spill_dir) if n.startswith("litemaas-spend-")]


def test_a_stop_before_the_next_database_retry_still_writes_the_adopted_journal(proxy_factory, own_pg, own_redis, stub_upstream):
    """A proxy started during a PostgreSQL outage adopts the journal a killed one left, and retries the database with a
    growing delay (1 s, 2 s, 4 s ...). PostgreSQL comes back, and a SIGTERM arrives before the next retry (a rolling
    restart right after the outage): the final flush connects once itself, so the adopted spend is written, not left
    in a pod's emptyDir that is about to go away."""
    dsn = own_pg.create_database("litellm_db")
    p = proxy_factory(dsn=dsn, redis_url=own_redis.url, env={"LITEMAAS_SPEND_FLUSH_INTERVAL": "0.2"})
    key = new_key(p, key_alias=uid("late"))
    users = []
    for n in range(12):
        if n == 2:
            wait_for(lambda: metric(p, "litellm_in_memory_spend_update_queue_size") == 0, message="first requests written")
            own_pg.stop()
        user = uid("late-user")
        status, data, dummy = http_json("POST", p.url + "/v1/chat/completions",
                                        {"model": "stub-model", "messages": [{"role": "user", "content": "one two"}], "max_tokens": 5, "user": user},
                                        {"Authorization": f"Bearer {key}"})
        assert status == 200, data
        users.append(user)
    kill_group(p)
    restart(p, workers=1, ready=False)
    wait_for(lambda: "database not ready" in p.log_tail(20), timeout=30, message="the new proxy tried the database once")
    time.sleep(1.2)  # its next tries: 1 s, then 2 s later; PostgreSQL comes back in between and the stop comes first
    own_pg.start()
    assert metric(p, "litellm_in_memory_spend_update_queue_size") == 10  # adopted, not written: no database yet
    assert p.terminate() == 0
    rows, key_spend = spend_rows(dsn)
    assert sorted(rows) == sorted(users), (len(rows), p.log_tail(30))
    assert abs(sum(key_spend.values()) - 12 * (2 * INPUT_COST + 5 * OUTPUT_COST)) < TOKEN / 2
    assert not [n for n in os.listdir(p.spill_dir) if n.startswith("litemaas-spend-")]


LEASE_TTL = 2


def send_quietly(*args, **kwargs) -> None:
    """A request whose proxy is killed under it: no answer is the expected outcome."""
    try:
        http_json(*args, **kwargs)
    except (OSError, http.client.HTTPException):
        pass


def test_a_killed_proxys_parallel_slot_is_free_again_within_the_lease_ttl(proxy_factory, own_pg, own_redis, stub_upstream):
    """max_parallel_requests 1 across two proxies: a slow request on A holds the slot (B refuses a second one, also after
    the lease TTL has passed several times: a live holder renews it); A is killed under it; B admits again within the TTL."""
    dsn = own_pg.create_database("litellm_db")
    models = stub_models(stub_upstream.url, names=("stub-model", "stub-delay-60000ms"))
    env = {"LITEMAAS_PARALLEL_LEASE_TTL": str(LEASE_TTL)}
    a = proxy_factory(dsn=dsn, redis_url=own_redis.url, env=env, models=models)
    b = proxy_factory(dsn=dsn, redis_url=own_redis.url, env=env, models=models)
    key = new_key(a, key_alias=uid("lease"), max_parallel_requests=1)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    slow_model = "stub-delay-60000ms"

    def upstream_got_slow(n: int) -> bool:
        return stub_upstream.stats()["by_model"].get(slow_model, 0) >= n

    before = stub_upstream.stats()["by_model"].get(slow_model, 0)
    slow = threading.Thread(target=send_quietly, args=("POST", a.url + "/v1/chat/completions", dict(body, model="stub-delay-60000ms"), headers),
                            kwargs={"timeout": 90}, daemon=True)
    slow.start()
    wait_for(lambda: upstream_got_slow(before + 1), message="the slow request admitted and at the upstream")
    wait_for(lambda: http_json("POST", b.url + "/v1/chat/completions", body, headers)[0] == 429, message="the slow request holds the slot")
    time.sleep(3 * LEASE_TTL)  # the holder is alive: its lease is renewed, the limit stays exact
    status, data, dummy = http_json("POST", b.url + "/v1/chat/completions", body, headers)
    assert status == 429 and "max_parallel_requests" in data["error"]["message"], data
    killed_at = time.monotonic()
    kill_group(a)
    wait_for(lambda: http_json("POST", b.url + "/v1/chat/completions", body, headers)[0] == 200, timeout=LEASE_TTL + 3, interval=0.1,
             message=f"the killed proxy's slot free again within the lease TTL ({LEASE_TTL} s)")
    print(f"slot free again {time.monotonic() - killed_at:.1f} s after the kill (lease TTL {LEASE_TTL} s)")
    # One slot again, not more: a second request in parallel with a slow one on B is refused.
    slow_b = threading.Thread(target=send_quietly, args=("POST", b.url + "/v1/chat/completions", dict(body, model="stub-delay-60000ms"), headers),
                              kwargs={"timeout": 90}, daemon=True)
    slow_b.start()
    wait_for(lambda: upstream_got_slow(before + 2), message="the slow request on B admitted and at the upstream")
    wait_for(lambda: http_json("POST", b.url + "/v1/chat/completions", body, headers)[0] == 429, message="the slot is taken again")
    b.kill()
    slow.join(timeout=5)
    slow_b.join(timeout=5)

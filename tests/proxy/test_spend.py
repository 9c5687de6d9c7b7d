"""Spend: exact accounting under concurrency, durability across restarts, SIGTERM, and database outages."""

from __future__ import annotations

import glob
import hashlib
import os
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from tests.proxy.conftest import INPUT_COST, OUTPUT_COST, chat, client, db_value, new_key, uid, wait_for
from tests.support.proxy import http_json


def key_spend(dsn: str, key: str) -> float:
    return db_value(dsn, 'SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = %s', hashlib.sha256(key.encode()).hexdigest())


def log_count(dsn: str, key: str) -> int:
    return db_value(dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', hashlib.sha256(key.encode()).hexdigest())


def test_spend_equals_sum_of_usage_after_concurrent_burst(proxy):
    user = uid("burst")
    assert proxy.admin("POST", "/user/new", {"user_id": user, "auto_create_key": False})[0] == 200
    key = new_key(proxy, user_id=user, key_alias=uid("burst"))
    rng = random.Random(7)
    jobs = [(" ".join(["w"] * rng.randint(1, 30)), rng.randint(1, 20), i % 3 == 0) for i in range(60)]

    def one(job):
        content, max_tokens, stream = job
        c = client(proxy, key)
        if stream:
            chunks = list(c.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": content}], max_tokens=max_tokens,
                                                    stream=True, stream_options={"include_usage": True}))
            usage = chunks[-1].usage
        else:
            usage = c.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": content}], max_tokens=max_tokens).usage
        return usage.prompt_tokens, usage.completion_tokens

    with ThreadPoolExecutor(16) as pool:
        usages = list(pool.map(one, jobs))
    expected = sum(p * INPUT_COST + c * OUTPUT_COST for p, c in usages)
    wait_for(lambda: log_count(proxy.dsn, key) == len(jobs), message="all spend logs written")
    assert key_spend(proxy.dsn, key) == pytest.approx(expected, rel=1e-9)
    assert db_value(proxy.dsn, 'SELECT spend FROM "LiteLLM_UserTable" WHERE user_id = %s', user) == pytest.approx(expected, rel=1e-9)
    assert proxy.admin("GET", f"/key/info?key={key}")[1]["info"]["spend"] == pytest.approx(expected, rel=1e-9)
    # The portal's usage view.
    today = datetime.now(timezone.utc).date().isoformat()
    token = hashlib.sha256(key.encode()).hexdigest()
    status, act = proxy.admin("GET", f"/user/daily/activity?start_date={today}&end_date={today}&api_key={token}&page=1&page_size=1000")
    assert status == 200
    assert act["metadata"]["total_api_requests"] == len(jobs)
    assert act["metadata"]["total_spend"] == pytest.approx(expected, rel=1e-9)
    assert act["metadata"]["total_prompt_tokens"] == sum(p for p, dummy in usages)
    day = act["results"][0]
    assert day["date"] == today
    assert day["breakdown"]["models"]["stub-model"]["api_key_breakdown"][token]["metrics"]["api_requests"] == len(jobs)
    status, logs = proxy.admin("GET", f"/spend/logs?api_key={key}")
    assert status == 200 and len(logs) == len(jobs) and sum(r["spend"] for r in logs) == pytest.approx(expected, rel=1e-9)


def test_restart_keeps_keys_and_spend(proxy_factory):
    p = proxy_factory(database="proxy_restart")
    key = new_key(p, key_alias=uid("restart"), max_budget=10)
    for dummy in range(3):
        assert chat(p, key)[0] == 200
    wait_for(lambda: log_count(p.dsn, key) == 3, message="spend written")
    spend = key_spend(p.dsn, key)
    assert spend == pytest.approx(3 * (2 * INPUT_COST + 5 * OUTPUT_COST))
    p.restart()
    assert p.admin("GET", f"/key/info?key={key}")[1]["info"]["spend"] == pytest.approx(spend)
    assert chat(p, key)[0] == 200


def test_sigterm_flushes_spend(proxy_factory):
    p = proxy_factory(database="proxy_sigterm", env={"LITEMAAS_SPEND_FLUSH_INTERVAL": "3600"})
    key = new_key(p, key_alias=uid("term"))
    for dummy in range(5):
        assert chat(p, key)[0] == 200
    assert log_count(p.dsn, key) == 0  # nothing written yet: the batch interval is an hour
    assert p.terminate() == 0
    assert log_count(p.dsn, key) == 5
    assert key_spend(p.dsn, key) == pytest.approx(5 * (2 * INPUT_COST + 5 * OUTPUT_COST))


@pytest.fixture
def own_pg(work_dir):
    from tests.support.services import PostgresServer

    server = PostgresServer(work_dir / f"pg-outage-{uuid.uuid4().hex[:6]}").start()
    yield server
    server.stop()


def test_spend_is_buffered_while_the_database_is_down(proxy_factory, own_pg):
    dsn = own_pg.create_database("litellm_db")
    # A short key cache TTL: while the database is away the proxy keeps serving the last known key state.
    p = proxy_factory(dsn=dsn, env={"LITEMAAS_KEY_CACHE_TTL": "0.3"})
    key = new_key(p, key_alias=uid("outage"))
    assert chat(p, key)[0] == 200  # the key is now cached in the proxy
    wait_for(lambda: log_count(dsn, key) == 1, message="first request written")
    own_pg.stop()
    for dummy in range(4):
        status, data, dummy = chat(p, key)
        assert status == 200, data
        time.sleep(0.2)
    status, data, dummy = http_json("GET", p.url + "/health/readiness")
    assert status == 503 and data["status"] == "unhealthy"
    own_pg.start()
    wait_for(lambda: log_count(dsn, key) == 5, timeout=60, interval=0.2, message="buffered spend written after the outage")
    assert key_spend(dsn, key) == pytest.approx(5 * (2 * INPUT_COST + 5 * OUTPUT_COST))


def journal_records(spill_dir) -> int:
    """Spend records in the journal files of a spill directory."""
    count = 0
    for path in glob.glob(os.path.join(spill_dir, "litemaas-spend-*")):
        with open(path) as fh:
            count += sum(1 for line in fh if line.strip())
    return count


def test_unwritten_spend_stays_journaled_at_shutdown_and_is_replayed(proxy_factory, own_pg):
    dsn = own_pg.create_database("litellm_db")
    env = {"LITEMAAS_KEY_CACHE_TTL": "600", "LITEMAAS_SHUTDOWN_FLUSH_TIMEOUT": "1"}
    p = proxy_factory(dsn=dsn, env=env)
    key = new_key(p, key_alias=uid("spill"))
    assert chat(p, key)[0] == 200
    wait_for(lambda: log_count(dsn, key) == 1, message="first request written")
    own_pg.stop()
    for dummy in range(3):
        assert chat(p, key)[0] == 200
    p.terminate()
    assert journal_records(p.spill_dir) == 3
    own_pg.start()
    p.start()
    wait_for(lambda: log_count(dsn, key) == 4, message="spilled records replayed")
    assert key_spend(dsn, key) == pytest.approx(4 * (2 * INPUT_COST + 5 * OUTPUT_COST))
    wait_for(lambda: not glob.glob(os.path.join(p.spill_dir, "litemaas-spend-*")), message="spill file removed")


# ---- the journal's new files and the adopters (a kill -9 must find every answered request's record on disk)

def _locked_elsewhere(path: str) -> bool:
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_a_new_journal_file_not_locked_yet_is_left_to_its_writer(tmp_path):
    """An adopter scanning the directory in the moment between a writer's open and its flock must not remove the
    writer's new file (the writer's records would then have no file: memory only, lost by a kill -9); a new file
    left by a writer that died in that moment holds nothing and is removed once it is old."""
    from litemaas_proxy import journal

    young, old = tmp_path / ".litemaas-new-young", tmp_path / ".litemaas-new-old"
    young.write_bytes(b"")
    old.write_bytes(b"")
    past = time.time() - journal.NEW_GRACE - 5
    os.utime(old, (past, past))
    assert journal.orphans(str(tmp_path), set()) == []
    assert young.exists() and not old.exists()


def test_a_journal_file_removed_before_its_lock_is_made_again(tmp_path, monkeypatch):
    """Should an adopter still remove a writer's new file before its lock (a writer descheduled past the grace), the
    writer makes another file: the segment gets a named, locked file and its records reach the disk."""
    import fcntl

    from litemaas_proxy import journal
    from litemaas_proxy.journal import Segment

    real_flock = fcntl.flock
    removed = []

    def adopter_in_the_window(fd, op):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if not removed and os.path.basename(name).startswith(".litemaas-new-"):
            os.unlink(name)  # what an adopter does to an unlocked new file
            removed.append(name)
        return real_flock(fd, op)

    monkeypatch.setattr(journal.fcntl, "flock", adopter_in_the_window)
    seg = Segment(None, None, True)
    journal.open_file(str(tmp_path), seg)
    assert removed, "the window was not exercised"
    assert os.path.basename(seg.path).startswith("litemaas-spend-") and os.path.exists(seg.path)
    assert _locked_elsewhere(seg.path)
    os.write(seg.fd, b'["r1"]\n')
    assert open(seg.path, "rb").read() == b'["r1"]\n'
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".litemaas-new-")]
    journal.delete(seg)

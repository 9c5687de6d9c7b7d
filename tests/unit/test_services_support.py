"""The one launcher of PostgreSQL and Redis (files/local/services.py), used by the tests and the local platform."""

import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
import redis

from tests.support import services

REPO = Path(__file__).resolve().parents[2]


def test_postgres_accepts_queries_and_creates_databases(pg_server):
    dsn = pg_server.create_database("support_check")
    assert pg_server.create_database("support_check") == dsn  # idempotent
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        assert cur.fetchone()[0] == "support_check"


def test_ensure_databases_reports_only_what_it_created_and_quotes_names(pg_server):
    odd = 'support-odd "name"'
    assert pg_server.ensure_databases([odd, "support_check_2"]) == [odd, "support_check_2"]
    assert pg_server.ensure_databases([odd, "support_check_2"]) == []
    with psycopg2.connect(pg_server.dsn("postgres")) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname = %s", (odd,))
        assert cur.fetchone() == (odd,)


def test_redis_answers(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.set("support-check", "1")
    assert client.get("support-check") == b"1"


def test_test_default_is_not_durable_and_the_platform_default_is(work_dir):
    fast = services.PostgresServer(work_dir / "pg-argv-a", port=1)
    durable = services.shared.PostgresServer(work_dir / "pg-argv-b", port=1)
    assert "fsync=off" in fast.argv() and "fsync=off" not in durable.argv()


def test_durable_postgres_keeps_data_across_restart_and_stop_leaves_no_process(work_dir):
    server = services.PostgresServer(work_dir / "pg-durable", durable=True, log_file=work_dir / "pg-durable.log").start()
    pid = server.proc.pid
    try:
        dsn = server.create_database("kept")
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('still here')")
        server.restart()
        assert server.proc.pid != pid
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT v FROM t")
            assert cur.fetchone() == ("still here",)
        assert "database system is ready" in (work_dir / "pg-durable.log").read_text()
    finally:
        last = server.proc.pid
        server.stop()
    assert not services.process_alive(pid) and not services.process_alive(last)
    assert not services.port_open(server.port)


def test_a_taken_port_is_a_clear_error_with_the_log(work_dir, redis_server):
    server = services.RedisServer(work_dir / "redis-clash", port=redis_server.port, ready_timeout=20)
    # The port answers already (the session's Redis): that one must not be taken for the new server.
    with pytest.raises(services.ServiceError, match=rf"port {redis_server.port} on 127.0.0.1 is already in use \(wanted for Redis\)"):
        server.start()
    assert server.proc is None


def test_a_server_that_dies_while_starting_is_a_clear_error_with_its_log(work_dir):
    server = services.RedisServer(work_dir / "redis-bad", ready_timeout=20)
    server.argv = lambda: ["redis-server", "--port", str(server.port), "--no-such-option", "1"]
    with pytest.raises(services.ServiceError, match=r"(?s)Redis exited with status \d+ while starting; last lines of .*redis.log:.*no-such-option"):
        server.start()


def test_stop_process_by_pid_stops_a_process_that_is_not_our_child():
    # A detached sleeper started by another process (as the supervisor's `down` meets the processes of its `up`).
    starter = ("import subprocess; p = subprocess.Popen(['sleep', '300'], start_new_session=True, "
               "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)")
    out = subprocess.run([sys.executable, "-c", starter], capture_output=True, text=True, check=True)
    pid = int(out.stdout)
    assert services.process_alive(pid)
    assert services.stop_process(pid, timeout=10) is True
    assert not services.process_alive(pid)
    assert services.stop_process(pid) is False


def test_the_supervisor_uses_this_launcher():
    source = (REPO / "files" / "local" / "supervisor.py").read_text()
    assert "from services import PostgresServer, RedisServer" in source
    assert "initdb" not in source and "redis-server" not in source

"""The service helpers themselves: real PostgreSQL and Redis answer queries."""

import psycopg2
import redis


def test_postgres_accepts_queries_and_creates_databases(pg_server):
    dsn = pg_server.create_database("support_check")
    assert pg_server.create_database("support_check") == dsn  # idempotent
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        assert cur.fetchone()[0] == "support_check"


def test_redis_answers(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.set("support-check", "1")
    assert client.get("support-check") == b"1"

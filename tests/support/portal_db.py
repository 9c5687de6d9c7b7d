"""The stand-in of the LiteMaaS portal's database: a database in the real PostgreSQL with the portal's tables
(``tests/integration/modules/portal_schema.sql``, written after the portal's migrations)."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg2
import psycopg2.extras

SCHEMA = Path(__file__).resolve().parents[1] / "integration" / "modules" / "portal_schema.sql"


def sql(dsn: str, query: str, args=None):
    """Run one statement in its own transaction; the rows as dicts when it returns any."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def create_portal_db(pg_server, prefix: str) -> str:
    """A new database named ``prefix`` + a random suffix, with the portal's tables; its DSN."""
    dsn = pg_server.create_database(prefix + uuid.uuid4().hex[:8])
    sql(dsn, SCHEMA.read_text())
    return dsn

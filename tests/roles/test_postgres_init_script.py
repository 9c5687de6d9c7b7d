"""The rendered PostgreSQL init script, run by a real PostgreSQL (the local binaries, a throw-away cluster)."""

from __future__ import annotations

import os
import shutil
import subprocess

import psycopg2
import pytest

from tests.support.services import PostgresServer, pg_bin


@pytest.fixture
def own_pg(work_dir):
    # A cluster of our own: the script creates cluster-wide roles and fixed database names.
    data = work_dir / "deploy-role-pg"
    shutil.rmtree(data, ignore_errors=True)
    server = PostgresServer(data).start()
    yield server
    server.stop()


def test_init_script_creates_both_databases_each_with_its_own_owner(renders, own_pg):
    script = renders["defaults"].one("ConfigMap", "litemaas-postgres-init")["data"]["10-litemaas-databases.sh"]
    env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=str(own_pg.port), POSTGRES_USER=own_pg.user,
               LITEMAAS_DB_USER="litemaas", LITEMAAS_DB_PASSWORD="portal'pw\"1", LITELLM_DB_USER="litellm", LITELLM_DB_PASSWORD="proxy-pw-2",
               PATH=os.path.dirname(pg_bin("psql")) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr

    conn = psycopg2.connect(own_pg.dsn())
    with conn.cursor() as cur:
        cur.execute("SELECT d.datname, r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                    "WHERE d.datname IN ('litemaas_db', 'litellm_db') ORDER BY 1")
        assert cur.fetchall() == [("litellm_db", "litellm"), ("litemaas_db", "litemaas")]
        cur.execute("SELECT rolname, rolcanlogin, rolsuper, rolpassword IS NOT NULL FROM pg_authid "
                    "WHERE rolname IN ('litemaas', 'litellm') ORDER BY 1")
        assert cur.fetchall() == [("litellm", True, False, True), ("litemaas", True, False, True)]
    conn.close()

    # Each owner works in its own database (the portal's migrations need pgcrypto, a trusted extension) ...
    for user, db in (("litemaas", "litemaas_db"), ("litellm", "litellm_db")):
        conn = psycopg2.connect(host="127.0.0.1", port=own_pg.port, user=user, dbname=db)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id int)")
            if db == "litemaas_db":
                cur.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        conn.close()
    # ... and cannot even connect to the other one.
    for user, db in (("litemaas", "litellm_db"), ("litellm", "litemaas_db")):
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            psycopg2.connect(host="127.0.0.1", port=own_pg.port, user=user, dbname=db)

    # A second run (e.g. a restarted pod on a half-initialised volume) fails loudly rather than silently.
    again = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, check=False)
    assert again.returncode != 0 and "already exists" in again.stderr

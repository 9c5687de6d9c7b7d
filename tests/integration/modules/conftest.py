"""Run the collection's modules through ``ansible-playbook`` against the live proxy (root ``proxy`` fixture).

``play(tasks, check=False, diff=False, verbosity=0, env=None)`` writes a playbook with the given tasks into a
temporary directory, runs it, and returns a ``Run`` with every task's registered result (``run.results``),
the exit code and the full output (to check that no secret is displayed).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent


class Run:
    def __init__(self, rc: int, stdout: str, results: list):
        self.rc = rc
        self.stdout = stdout
        self.results = results

    def __getitem__(self, index):
        return self.results[index]


@pytest.fixture
def uid() -> str:
    """A short unique prefix so that tests sharing the session's proxy never see each other's keys."""
    return "t" + uuid.uuid4().hex[:8]


@pytest.fixture
def play(ansible_env, proxy, tmp_path):
    counter = [0]

    def run(tasks, check=False, diff=False, verbosity=0, env=None, connection=True):
        counter[0] += 1
        d = tmp_path / f"play{counter[0]}"
        d.mkdir()
        out_file = d / "results.json"
        body = []
        names = []
        for i, task in enumerate(tasks):
            task = dict(task)
            task.setdefault("name", f"task {i}")
            task["register"] = f"r{i}"
            task["ignore_errors"] = True
            body.append(task)
            names.append(f"r{i}")
        body.append({
            "name": "Save the results",
            "ansible.builtin.copy": {"content": "{{ [" + ", ".join(names) + "] | to_json }}", "dest": str(out_file), "mode": "0600"},
            "no_log": True,
            "check_mode": False,
            "diff": False,
        })
        playbook = [{"hosts": "localhost", "gather_facts": False, "connection": "local", "tasks": body}]
        (d / "play.yml").write_text(yaml.safe_dump(playbook, sort_keys=False))
        run_env = dict(ansible_env)
        if connection:
            run_env["LITEMAAS_PROXY_URL"] = proxy.url
            run_env["LITEMAAS_MASTER_KEY"] = proxy.master_key
        run_env.update(env or {})
        cmd = ["ansible-playbook", "-i", "localhost,", str(d / "play.yml")]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        proc = subprocess.run(cmd, env=run_env, cwd=str(d), capture_output=True, text=True, timeout=300, check=False)
        results = json.loads(out_file.read_text()) if out_file.exists() else []
        if not results:
            raise AssertionError(f"playbook did not run:\n{proc.stdout}\n{proc.stderr}")
        return Run(proc.returncode, proc.stdout + proc.stderr, results)

    return run


@pytest.fixture(scope="session")
def portal_db(pg_server):
    """A portal database (minimal schema, see portal_schema.sql) in the session's real PostgreSQL; returns its DSN."""
    import psycopg2

    dsn = pg_server.create_database("litemaas_portal_modules")
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute((HERE / "portal_schema.sql").read_text())
    conn.close()
    return dsn


def sql(dsn: str, query: str, args=None, fetch=True):
    import psycopg2
    import psycopg2.extras

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(query, args)
            return [dict(r) for r in cur.fetchall()] if fetch and cur.description else None
    finally:
        conn.close()

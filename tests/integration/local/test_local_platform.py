"""The local platform end to end: ``playbooks/local.yml`` with the stub upstream in place of the local model.

Free ports and a data directory under the session's work dir, so that it never meets a platform a user runs from
this checkout. One playbook run starts PostgreSQL, Redis and the proxy, registers the model, creates 3 keys and
sends one request per key; the second run must change nothing and leave the processes alone; ``scripts/local.sh
down`` must stop every process.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.services import free_port

REPO = Path(__file__).resolve().parents[3]
SUPERVISOR = REPO / "files" / "local" / "supervisor.py"
MASKED = re.compile(r"\bsk-[A-Za-z0-9_-]{2}\.\.\.[A-Za-z0-9_-]{4}\b")
RECAP = re.compile(r"localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def recap(output: str) -> dict:
    match = RECAP.search(output)
    assert match, output[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def status(data_dir: Path) -> dict:
    out = subprocess.run([sys.executable, str(SUPERVISOR), "status", "--state-dir", str(data_dir), "--json"],
                         capture_output=True, text=True, check=True).stdout
    return {row["name"]: row for row in json.loads(out)}


class Platform:
    def __init__(self, ansible_env: dict, data_dir: Path, stub_url: str):
        self.env = dict(ansible_env)
        self.env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = "yaml"
        self.env["ANSIBLE_PIPELINING"] = "true"
        self.data_dir = data_dir
        self.ports = {"postgres": free_port(), "redis": free_port(), "proxy": free_port()}
        self.vars = {
            "litemaas_local_data_dir": str(data_dir),
            "litemaas_local_postgres_port": self.ports["postgres"],
            "litemaas_local_redis_port": self.ports["redis"],
            "litemaas_local_proxy_port": self.ports["proxy"],
            "litemaas_local_model_url": stub_url,
            "litemaas_local_model_name": "stub-model",
            "litemaas_local_workshop_guid": "t",
        }

    def playbook(self, **extra) -> subprocess.CompletedProcess:
        variables = dict(self.vars, **extra)
        vars_file = self.data_dir.parent / "local-test-vars.json"
        vars_file.write_text(json.dumps(variables))
        return subprocess.run(["ansible-playbook", str(REPO / "playbooks" / "local.yml"), "-e", f"@{vars_file}"],
                              env=self.env, cwd=str(REPO), capture_output=True, text=True, timeout=600, check=False)

    @property
    def store_file(self) -> Path:
        return self.data_dir / "secrets" / "workshop-keys" / "t.json"

    def keys(self) -> dict:
        """alias -> secret, from the workshop role's file key store."""
        return {alias: entry["key"] for alias, entry in json.loads(self.store_file.read_text())["keys"].items()}


@pytest.fixture(scope="module")
def platform(ansible_env, work_dir, stub_upstream):
    data_dir = work_dir / "local-platform" / "data"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    plat = Platform(ansible_env, data_dir, stub_upstream.url)
    plat.first = plat.playbook()
    yield plat
    subprocess.run([sys.executable, str(SUPERVISOR), "down", "--state-dir", str(data_dir)], capture_output=True, check=False)


def test_first_run_starts_everything_and_answers_each_key(platform):
    run = platform.first
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    counts = recap(run.stdout)
    assert counts["failed"] == 0 and counts["changed"] > 0
    running = status(platform.data_dir)
    assert sorted(running) == ["postgres", "proxy", "redis"]
    assert all(row["state"] == "running" for row in running.values())
    keys = platform.keys()
    assert sorted(keys) == ["virtkey-t-user1", "virtkey-t-user2", "virtkey-t-user3"]
    assert all(key.startswith("sk-") for key in keys.values())
    assert stat.S_IMODE(platform.store_file.stat().st_mode) == 0o600
    # The table: endpoint, model, one line per user with the masked key and the reply that came through the proxy.
    assert f"Endpoint (OpenAI-compatible): http://127.0.0.1:{platform.ports['proxy']}/v1" in run.stdout
    assert "stub-model" in run.stdout
    for n in (1, 2, 3):
        line = next(ln for ln in run.stdout.splitlines() if f"virtkey-t-user{n} " in ln and f"user{n}-t@litemaas.local" in ln)
        assert MASKED.search(line), line
        assert "OK: tok0 tok1" in line, line


def test_keys_never_appear_in_full(platform):
    keys = platform.keys()
    master = (platform.data_dir / "secrets" / "master_key").read_text().strip()
    for secret in list(keys.values()) + [master]:
        assert secret not in platform.first.stdout
        assert secret not in platform.first.stderr
    summary = (platform.data_dir / "summary.txt").read_text()
    assert len(MASKED.findall(summary)) == 3
    for secret in keys.values():
        assert secret not in summary


def test_keys_work_through_the_proxy(platform):
    key = platform.keys()["virtkey-t-user2"]
    body = json.dumps({"model": "stub-model", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{platform.ports['proxy']}/v1/chat/completions", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        reply = json.load(resp)
    assert reply["choices"][0]["message"]["content"] == "tok0 tok1 tok2"
    # A key of this workshop may use only the demo model.
    body = json.dumps({"model": "granite-3-8b", "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{platform.ports['proxy']}/v1/chat/completions", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60)
    assert err.value.code in (401, 403)


def test_second_run_changes_nothing_and_leaves_processes_alone(platform):
    before = {name: row["pid"] for name, row in status(platform.data_dir).items()}
    keys_before = platform.keys()
    run = platform.playbook()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    counts = recap(run.stdout)
    assert counts["changed"] == 0, run.stdout[-6000:]
    assert {name: row["pid"] for name, row in status(platform.data_dir).items()} == before
    assert platform.keys() == keys_before
    assert len(MASKED.findall(run.stdout)) == 3
    for secret in keys_before.values():
        assert secret not in run.stdout


def test_down_stops_every_process(platform):
    pids = [row["pid"] for row in status(platform.data_dir).values()]
    assert len(pids) == 3 and all(pid_alive(pid) for pid in pids)
    env = dict(os.environ, LITEMAAS_LOCAL_DATA_DIR=str(platform.data_dir))
    down = subprocess.run(["bash", str(REPO / "scripts" / "local.sh"), "down"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert down.returncode == 0, down.stderr
    assert down.stdout.split() == ["stopped", "proxy", "stopped", "redis", "stopped", "postgres"]
    assert not [pid for pid in pids if pid_alive(pid)]
    assert not list((platform.data_dir / "run").glob("*.pid"))
    again = subprocess.run(["bash", str(REPO / "scripts" / "local.sh"), "status"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and "nothing is running" in again.stdout


def test_without_a_model_the_playbook_says_what_to_pass(ansible_env, work_dir):
    data_dir = work_dir / "local-platform-nomodel"
    run = subprocess.run(["ansible-playbook", str(REPO / "playbooks" / "local.yml"), "-e", f"litemaas_local_data_dir={data_dir}"],
                         env=ansible_env, cwd=str(REPO), capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode != 0
    assert "litemaas_local_model_url" in run.stdout and "--model-url URL" in run.stdout
    assert not (data_dir / "run").exists()


def test_local_sh_usage_and_unknown_arguments():
    script = str(REPO / "scripts" / "local.sh")
    shown = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0
    assert "Usage: bash scripts/local.sh [up|down|status] [options]" in shown.stdout
    assert "--model-url URL" in shown.stdout and "set -euo" not in shown.stdout
    wrong = subprocess.run(["bash", script, "--bogus"], capture_output=True, text=True, timeout=60, check=False)
    assert wrong.returncode == 2
    assert "error: unknown argument '--bogus' (see --help)" in wrong.stderr

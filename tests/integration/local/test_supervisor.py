"""files/local/supervisor.py on its own: a second ``up`` leaves a process alone, a changed spec restarts it, ``down``
leaves nothing behind, and a port held by someone else is refused."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.services import free_port, process_alive

REPO = Path(__file__).resolve().parents[3]
SUPERVISOR = REPO / "files" / "local" / "supervisor.py"


def supervisor(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SUPERVISOR), *args], capture_output=True, text=True, timeout=120, check=False)


def write_spec(path: Path, state_dir: Path, port: int, directory: str) -> None:
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", directory]
    web = {"name": "web", "kind": "command", "port": port, "argv": argv, "health_url": f"http://127.0.0.1:{port}/", "ready_timeout": 30}
    path.write_text(json.dumps({"state_dir": str(state_dir), "services": [web]}))


def test_up_again_restart_on_change_and_down(tmp_path):
    state, spec, port = tmp_path / "state", tmp_path / "spec.json", free_port()
    write_spec(spec, state, port, str(tmp_path))
    first = supervisor("up", "--spec", str(spec))
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["changed"] is True and report["started"] == ["web"]
    pid = report["services"]["web"]["pid"]
    try:
        again = json.loads(supervisor("up", "--spec", str(spec)).stdout)
        assert again["changed"] is False and again["running"] == ["web"] and again["services"]["web"]["pid"] == pid

        (tmp_path / "other").mkdir()
        write_spec(spec, state, port, str(tmp_path / "other"))  # another argument: the process must be started again
        changed = json.loads(supervisor("up", "--spec", str(spec)).stdout)
        assert changed["changed"] is True and changed["restarted"] == ["web"] and changed["started"] == []
        new_pid = changed["services"]["web"]["pid"]
        assert new_pid != pid and not process_alive(pid) and process_alive(new_pid)
    finally:
        down = supervisor("down", "--state-dir", str(state))
    assert down.returncode == 0 and down.stdout.split() == ["stopped", "web"]
    assert not process_alive(new_pid)
    assert not list((state / "run").glob("*.pid"))


def test_a_port_held_by_another_process_is_refused(tmp_path):
    state, spec = tmp_path / "state", tmp_path / "spec.json"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        write_spec(spec, state, port, str(tmp_path))
        run = supervisor("up", "--spec", str(spec))
    assert run.returncode == 1
    assert f"port {port} on 127.0.0.1 is taken by a process this platform did not start (wanted for web)" in run.stderr
    assert not list((state / "run").glob("*.pid"))

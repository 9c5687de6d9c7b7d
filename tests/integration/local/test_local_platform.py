"""The local platform end to end: ``playbooks/local.yml`` with the stub upstream in place of the local model.

docs/local.md's command lines run as written (``ansible-playbook rhpds.litemaas.local -e
litemaas_local_model_url=http://127.0.0.1:8000/v1 -e litemaas_local_model_name=my-model``, ``bash scripts/local.sh
check|status|down``, ``ansible-playbook rhpds.litemaas.local -e litemaas_local_state=absent``): the stub model server
listens on 127.0.0.1:8000 as the doc's model does, and an inventory gives free ports and a data directory under the
session's work dir (``LITEMAAS_LOCAL_DATA_DIR`` for the script), so the run never meets a platform a user runs from
this checkout. The first run starts PostgreSQL, Redis and the proxy, registers the model, creates 3 keys and asks
one question per key, each checked for its expected fact (the stub answers ``tok0 tok1 ...``, so the test's
questions expect ``tok0``, except one that expects ``Paris`` and must show as WRONG); ``scripts/local.sh check``
asks again; the second run must change nothing and leave the processes alone; a run where no answer is right must
fail and say so; the playbook's ``absent`` and ``scripts/local.sh down`` must stop every process.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.doc_commands import inventory, sh
from tests.support.services import free_port
from tests.support.stub_upstream import StubUpstream

REPO = Path(__file__).resolve().parents[3]
SUPERVISOR = REPO / "files" / "local" / "supervisor.py"
ASK = REPO / "files" / "local" / "ask.py"
MASKED = re.compile(r"\bsk-[A-Za-z0-9_-]{2}\.\.\.[A-Za-z0-9_-]{4}\b")
UP = "ansible-playbook rhpds.litemaas.local -e litemaas_local_model_url=http://127.0.0.1:8000/v1 -e litemaas_local_model_name=my-model"
DOWN = "ansible-playbook rhpds.litemaas.local -e litemaas_local_state=absent"
QUESTIONS = [{"question": "Say a few words.", "expect": ["tok0"]}, {"question": "What is the capital of France?", "expect": ["Paris"]}]
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
    def __init__(self, ansible_env: dict, data_dir: Path):
        self.data_dir = data_dir
        self.ports = {"postgres": free_port(), "redis": free_port(), "proxy": free_port()}
        # What the doc's command line leaves to the defaults, given as a user's inventory would: free ports and a data
        # directory of the test's own, the workshop and the questions the stub answers.
        self.vars = {
            "litemaas_local_data_dir": str(data_dir),
            "litemaas_local_postgres_port": self.ports["postgres"],
            "litemaas_local_redis_port": self.ports["redis"],
            "litemaas_local_proxy_port": self.ports["proxy"],
            "litemaas_local_workshop_guid": "t",
            "litemaas_local_smoke_questions": QUESTIONS,
        }
        hosts = inventory(data_dir.parent / "inventory", self.vars)
        self.env = dict(ansible_env, ANSIBLE_INVENTORY=str(hosts), LITEMAAS_LOCAL_DATA_DIR=str(data_dir))
        self.env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = "yaml"
        self.env["ANSIBLE_PIPELINING"] = "true"

    def run(self, command: str, rc: int | None = 0) -> subprocess.CompletedProcess:
        """A documented command line, as written, from the checkout (where docs/local.md runs it)."""
        if rc is None:
            return subprocess.run(["bash", "-c", command], env=self.env, cwd=str(REPO), capture_output=True, text=True, timeout=600, check=False)
        return sh(command, self.env, REPO, rc=rc, timeout=600)

    def playbook(self, **extra) -> subprocess.CompletedProcess:
        """The doc's command line, with more -e values when a test asks for them."""
        if not extra:
            return self.run(UP, rc=None)
        vars_file = self.data_dir.parent / "local-test-vars.json"
        vars_file.write_text(json.dumps(extra))
        return self.run(f"{UP} -e @{vars_file}", rc=None)

    @property
    def store_file(self) -> Path:
        return self.data_dir / "secrets" / "workshop-keys" / "t.json"

    def keys(self) -> dict:
        """alias -> secret, from the workshop role's file key store."""
        return {alias: entry["key"] for alias, entry in json.loads(self.store_file.read_text())["keys"].items()}


@pytest.fixture(scope="module")
def platform(ansible_env, work_dir):
    data_dir = work_dir / "local-platform" / "data"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # The model server of the doc's command line: http://127.0.0.1:8000/v1 (the stub serves any model name).
    model = StubUpstream(port=8000, log_path=work_dir / "local-platform" / "model.log").start()
    plat = Platform(ansible_env, data_dir)
    try:
        plat.first = plat.playbook()
        yield plat
    finally:
        subprocess.run([sys.executable, str(SUPERVISOR), "down", "--state-dir", str(data_dir)], capture_output=True, check=False)
        model.stop()


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
    # The table: endpoint, model, one line per user with the masked key, the question and the answer through the proxy,
    # judged against the expected fact: users 1 and 3 ask question 1 (right), user 2 question 2 (wrong, shown as such).
    assert f"Endpoint (OpenAI-compatible): http://127.0.0.1:{platform.ports['proxy']}/v1" in run.stdout
    assert "my-model" in run.stdout
    assert_answer_table(run.stdout)
    assert_answer_table((platform.data_dir / "summary.txt").read_text())


def answer_lines(text: str) -> dict:
    lines = {}
    for n in (1, 2, 3):
        found = [ln for ln in text.splitlines() if f"virtkey-t-user{n} " in ln and f"user{n}-t@litemaas.local" in ln]
        assert len(found) == 1, text[-3000:]
        lines[n] = found[0]
    return lines


def assert_answer_table(text: str) -> None:
    lines = answer_lines(text)
    for n in (1, 2, 3):
        assert MASKED.search(lines[n]), lines[n]
    for n in (1, 3):
        assert re.search(r' OK +\d+\.\d\ds  Say a few words\. -> "tok0 tok1 tok2[^"]*"$', lines[n]), lines[n]
    assert re.search(r' WRONG +\d+\.\d\ds  What is the capital of France\? -> "tok0 tok1 tok2[^"]*"  \(expected Paris\)$', lines[2]), lines[2]
    assert "2 of 3 answers right." in text


def test_check_asks_again_through_the_proxy_with_each_key(platform):
    check = platform.run("bash scripts/local.sh check")
    assert_answer_table(check.stdout)
    for secret in platform.keys().values():
        assert secret not in check.stdout
    config = json.loads((platform.data_dir / "check.json").read_text())
    assert config["key_store"] == str(platform.store_file)
    assert [u["alias"] for u in config["users"]] == ["virtkey-t-user1", "virtkey-t-user2", "virtkey-t-user3"]
    assert all(sorted(u) == ["alias", "user_id"] for u in config["users"])  # no secrets in check.json
    for secret in platform.keys().values():
        assert secret not in json.dumps(config)


def test_check_exits_non_zero_when_no_answer_is_right(platform, tmp_path):
    config = json.loads((platform.data_dir / "check.json").read_text())
    config["questions"] = [{"question": "What is the capital of France?", "expect": ["Paris"]}]
    path = tmp_path / "check.json"
    path.write_text(json.dumps(config))
    run = subprocess.run([sys.executable, str(ASK), "check", "--config", str(path)], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.count("WRONG") == 3 and "0 of 3 answers right." in run.stdout
    # A key the proxy refuses shows as FAILED with the proxy's status and message.
    store = json.loads(platform.store_file.read_text())
    store["keys"]["virtkey-t-user1"]["key"] = "sk-not-a-key-of-this-proxy"
    bad_store = tmp_path / "store.json"
    bad_store.write_text(json.dumps(store))
    config["key_store"] = str(bad_store)
    path.write_text(json.dumps(config))
    run = subprocess.run([sys.executable, str(ASK), "check", "--config", str(path)], capture_output=True, text=True, timeout=300, check=False)
    line = answer_lines(run.stdout)[1]
    assert re.search(r" FAILED \(HTTP 401\): \S", line), line
    missing = subprocess.run([sys.executable, str(ASK), "check", "--config", str(tmp_path / "nope.json")], capture_output=True, text=True,
                             timeout=60, check=False)
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "nope.json" in missing.stderr


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
    body = json.dumps({"model": "my-model", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}).encode()
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
    assert err.value.code == 401
    refusal = json.load(err.value)["error"]
    assert refusal["type"] == "key_model_access_denied", refusal
    assert refusal["message"].startswith("key not allowed to access model."), refusal
    assert "Tried to access granite-3-8b" in refusal["message"], refusal


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


def test_a_run_where_no_answer_is_right_fails_and_shows_the_answers(platform):
    before = {name: row["pid"] for name, row in status(platform.data_dir).items()}
    run = platform.playbook(litemaas_local_smoke_questions=[{"question": "What is the capital of France?", "expect": ["Paris"]}])
    assert run.returncode != 0
    assert "No key got a right answer through the proxy" in run.stdout
    summary = (platform.data_dir / "summary.txt").read_text()
    assert summary.count("WRONG") == 3 and "0 of 3 answers right." in summary
    assert len(re.findall(r'-> "tok0 tok1[^"]*"  \(expected Paris\)', summary)) == 3
    assert {name: row["pid"] for name, row in status(platform.data_dir).items()} == before


def test_status_names_each_process_and_shows_the_answers(platform):
    shown = platform.run("bash scripts/local.sh status").stdout
    for name, row in status(platform.data_dir).items():
        assert re.search(rf"^\s*{name}\s.*\b{row['pid']}\b", shown, re.M), shown
    # The summary of the last run (the one where no answer was right), answers included.
    assert (platform.data_dir / "summary.txt").read_text().strip() in shown
    assert "0 of 3 answers right." in shown


def test_local_sh_as_written_uses_the_model_url_it_remembers(platform):
    """``bash scripts/local.sh`` as docs/local.md writes it, on a platform whose model is the server given once with
    ``--model-url`` (what ``up`` remembers): it uses that server (no llama.cpp build, which takes about 30 minutes
    and is the one path of ``up`` not run here), leaves the running processes alone and shows the answers."""
    ports = {"LITEMAAS_LOCAL_PROXY_PORT": platform.ports["proxy"], "LITEMAAS_LOCAL_POSTGRES_PORT": platform.ports["postgres"],
             "LITEMAAS_LOCAL_REDIS_PORT": platform.ports["redis"]}
    platform.env.update({k: str(v) for k, v in ports.items()})
    # The form docs/local.md gives in prose (`--model-url http://HOST:PORT/v1 [--model-name MODEL]`), filled in.
    given = platform.run("bash scripts/local.sh --model-url http://127.0.0.1:8000/v1 --model-name my-model", rc=None)
    assert given.returncode == 0, given.stdout[-3000:] + given.stderr[-2000:]
    assert (platform.data_dir / "model-url").read_text().strip() == "http://127.0.0.1:8000/v1", given.stdout
    before = {name: row["pid"] for name, row in status(platform.data_dir).items()}  # (the settings of up, not the playbook's)
    run = sh("bash scripts/local.sh", platform.env, REPO, timeout=600)
    assert "Model: the OpenAI-compatible server at http://127.0.0.1:8000/v1 (remembered" in run.stdout, run.stdout
    assert "model my-model" in run.stdout and "Ready in" in run.stdout, run.stdout
    assert (platform.data_dir / "summary.txt").read_text().strip() in run.stdout
    assert "2 of 3 answers right." in run.stdout, run.stdout
    assert {name: row["pid"] for name, row in status(platform.data_dir).items()} == before
    assert "llama" not in run.stdout.lower()


def test_down_stops_every_process(platform):
    pids = [row["pid"] for row in status(platform.data_dir).values()]
    assert len(pids) == 3 and all(pid_alive(pid) for pid in pids)
    down = platform.run("bash scripts/local.sh down")
    assert down.stdout.split() == ["stopped", "proxy", "stopped", "redis", "stopped", "postgres"]
    assert not [pid for pid in pids if pid_alive(pid)]
    assert not list((platform.data_dir / "run").glob("*.pid"))
    again = platform.run("bash scripts/local.sh status")
    assert "nothing is running" in again.stdout
    # The playbook's way up again and down: the same processes back, then all stopped, the data kept.
    up = platform.playbook()
    assert up.returncode == 0 and recap(up.stdout)["failed"] == 0, up.stdout[-4000:]
    pids = [row["pid"] for row in status(platform.data_dir).values()]
    assert len(pids) == 3 and all(pid_alive(pid) for pid in pids)
    absent = platform.run(DOWN)
    assert recap(absent.stdout)["changed"] > 0
    assert not [pid for pid in pids if pid_alive(pid)]
    assert "nothing is running" in platform.run("bash scripts/local.sh status").stdout
    assert platform.store_file.is_file()


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
    assert "Usage: bash scripts/local.sh [up|check|status|down] [options]" in shown.stdout
    assert "--model-url URL" in shown.stdout and "set -euo" not in shown.stdout
    wrong = subprocess.run(["bash", script, "--bogus"], capture_output=True, text=True, timeout=60, check=False)
    assert wrong.returncode == 2
    assert "error: unknown argument '--bogus' (see --help)" in wrong.stderr

"""The safety switches from the command line, as the playbooks document them: ``-e name=value`` exactly as written.

``-e k=v`` gives the string "false", "no" or "0": each must stop the play (restore, scale) or keep it from being a dry
run (key sync) on every supported ansible-core, and "true" must let it go on. A value that is not a boolean is refused
before anything runs, naming the variable. This file also runs with the oldest supported ansible-core
(tests/support/ansible_core.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import uuid

import pytest
import yaml

from tests.playbooks.conftest import PLAYBOOKS, REPO, recap
from tests.support.portal_db import create_portal_db, sql

FALSE = ("false", "no", "0", "False", "off")
TRUE = ("true", "yes", "1")


def documented(playbook: str) -> list:
    """The command lines in a playbook's header comment, as written there (a trailing ``# comment`` removed)."""
    text = (PLAYBOOKS / playbook).read_text()
    return [m.strip() for m in re.findall(r"^#\s+(ansible-playbook rhpds\.litemaas\.[a-z_]+[^#\n]*)", text, re.M)]


def run(env: dict, line: str, *more: str, cwd=REPO, rc: int | None = None) -> subprocess.CompletedProcess:
    """Run a command line as a shell would split it, with more arguments after it."""
    proc = subprocess.run(shlex.split(line) + list(more), env=env, cwd=str(cwd), capture_output=True, text=True, timeout=600, check=False)
    if rc is not None:
        assert proc.returncode == rc, f"{line} {' '.join(more)} exited {proc.returncode}\n{proc.stdout[-5000:]}\n{proc.stderr[-2000:]}"
    return proc


def with_value(line: str, name: str, value: str) -> str:
    """The documented line with ``-e name=...`` given another value."""
    changed, count = re.subn(rf"-e {name}=\S+", f"-e {name}={value}", line)
    assert count == 1, (line, name)
    return changed


# ---------------------------------------------------------------- restore: litemaas_restore_confirm

RESTORE_CHECK_FAILED = "-e litemaas_restore_confirm=true: the restore replaces the current data"


def restore_line() -> str:
    lines = [x for x in documented("restore.yml") if "litemaas_restore_confirm=" in x]
    assert lines == ["ansible-playbook rhpds.litemaas.restore -e litemaas_restore_backup=20260301-020000 -e litemaas_restore_confirm=true"]
    return lines[0]


def test_restore_as_documented_passes_the_confirmation_check(ansible_env, tmp_path):
    # No cluster here (the kubeconfig names nothing): the play gets past the check and stops at the first cluster read.
    env = dict(ansible_env, KUBECONFIG=str(tmp_path / "none"))
    proc = run(env, restore_line(), rc=2)
    assert "TASK [rhpds.litemaas.litemaas_restore : Check what to restore]" in proc.stdout
    assert RESTORE_CHECK_FAILED not in proc.stdout
    assert "TASK [rhpds.litemaas.litemaas_connection : Read the LiteMaaS routes]" in proc.stdout


@pytest.mark.parametrize("value", FALSE)
def test_restore_with_a_false_confirmation_stops_at_the_check(ansible_env, tmp_path, value):
    env = dict(ansible_env, KUBECONFIG=str(tmp_path / "none"))
    proc = run(env, with_value(restore_line(), "litemaas_restore_confirm", value), rc=2)
    assert RESTORE_CHECK_FAILED in proc.stdout
    assert "TASK [Find the cluster]" not in proc.stdout
    assert recap(proc.stdout) == {"ok": 1, "changed": 0, "unreachable": 0, "failed": 1}


@pytest.mark.parametrize("playbook, name", [("restore.yml", "litemaas_restore_confirm"), ("scale.yml", "litemaas_scale_force"),
                                            ("key_sync.yml", "litemaas_key_sync_dry_run")])
def test_a_value_that_is_not_a_boolean_is_refused_naming_the_variable(ansible_env, tmp_path, playbook, name):
    env = dict(ansible_env, KUBECONFIG=str(tmp_path / "none"))
    proc = run(env, f"ansible-playbook rhpds.litemaas.{playbook[:-4]} -e litemaas_restore_backup=b1 -e {name}=maybe", rc=2)
    assert re.search(rf"argument '{name}' is of type (<class 'str'>|str) and we were unable to convert to bool: "
                     r"The value 'maybe' is not a valid boolean", proc.stdout), proc.stdout[-3000:]
    assert recap(proc.stdout)["ok"] == 0


# ---------------------------------------------------------------- scale: litemaas_scale_force

SCALE_REFUSED = "The portal backend must stay at 1 replica while OAuth login is on"


def scale_line(value: str, render_dir) -> str:
    # The documented override (playbooks/scale.yml) with the documented render mode, for two backend replicas.
    assert "(override: -e litemaas_scale_force=true)" in (PLAYBOOKS / "scale.yml").read_text()
    assert "Render mode: -e ocp4_workload_litemaas_render_dir=DIR" in (PLAYBOOKS / "scale.yml").read_text()
    return (f"""ansible-playbook rhpds.litemaas.scale -e '{{"litemaas_scale": {{"backend": 2}}}}' -e litemaas_scale_force={value}"""
            f" -e ocp4_workload_litemaas_render_dir={render_dir}")


@pytest.mark.parametrize("value", TRUE)
def test_scale_force_true_scales_the_backend(ansible_env, tmp_path, value):
    run(ansible_env, scale_line(value, tmp_path), rc=0)
    docs = list(yaml.safe_load_all((tmp_path / "day2/scale/deployment.yaml").read_text()))
    assert [(d["metadata"]["name"], d["spec"]["replicas"]) for d in docs] == [("litellm-backend", 2)]


@pytest.mark.parametrize("value", FALSE)
def test_scale_force_false_refuses_the_backend(ansible_env, tmp_path, value):
    proc = run(ansible_env, scale_line(value, tmp_path), rc=2)
    assert SCALE_REFUSED in proc.stdout
    assert not (tmp_path / "day2").exists()


def test_scale_force_from_json_and_oauth_off_from_the_command_line(ansible_env, tmp_path):
    # JSON booleans, and the deploy role's OAuth switch given as a string: off means the backend may scale.
    run(ansible_env, scale_line("false", tmp_path / "a"), "-e", "ocp4_workload_litemaas_oauth_enabled=false", rc=0)
    proc = run(ansible_env, scale_line("false", tmp_path / "b"), "-e", '{"litemaas_scale_force": false}', rc=2)
    assert SCALE_REFUSED in proc.stdout
    run(ansible_env, scale_line("false", tmp_path / "c"), "-e", '{"litemaas_scale_force": true}', rc=0)


# ---------------------------------------------------------------- key sync: litemaas_key_sync_dry_run

@pytest.fixture()
def portal_with_a_stale_key(pg_server, proxy):
    """A portal database with two keys of one user: one live in the proxy, one whose proxy key is gone."""
    dsn = create_portal_db(pg_server, "portal_sw_")
    owner = sql(dsn, "INSERT INTO users (username, email, oauth_id, roles) VALUES ('o', 'o@example.com', 'o', '{user}') RETURNING id::text AS id")[0]["id"]
    status, live = proxy.admin("POST", "/key/generate", {"key_alias": "sw-" + uuid.uuid4().hex[:6], "user_id": owner})
    assert status == 200
    for name, key_hash in (("live", live["token"]), ("gone", hashlib.sha256(uuid.uuid4().bytes).hexdigest())):
        sql(dsn, "INSERT INTO api_keys (user_id, name, key_hash, key_prefix) VALUES (%s, %s, %s, 'sk-...')", (owner, name, key_hash))
    return dsn


def key_sync(ansible_env, tmp_path, proxy, portal, line):
    conn = tmp_path / f"conn-{uuid.uuid4().hex[:6]}.json"
    conn.write_text(json.dumps({"litemaas_proxy_url": proxy.url, "litemaas_master_key": proxy.master_key, "litemaas_portal_db_url": portal}))
    proc = run(ansible_env, line, "-e", f"@{conn}", rc=0)
    return proc, {r["name"]: r["is_active"] for r in sql(portal, "SELECT name, is_active FROM api_keys")}


def test_key_sync_dry_run_as_documented_changes_nothing(ansible_env, tmp_path, proxy, portal_with_a_stale_key):
    line = [x for x in documented("key_sync.yml") if "dry_run" in x]
    assert line == ["ansible-playbook rhpds.litemaas.key_sync -e litemaas_key_sync_dry_run=true"]
    for value in TRUE:
        proc, active = key_sync(ansible_env, tmp_path, proxy, portal_with_a_stale_key, with_value(line[0], "litemaas_key_sync_dry_run", value))
        assert "Dry run only: nothing changed." in proc.stdout
        assert active == {"live": True, "gone": True}
        assert recap(proc.stdout)["changed"] == 1  # the dry run only


@pytest.mark.parametrize("value", FALSE[:3])
def test_key_sync_dry_run_false_reconciles(ansible_env, tmp_path, proxy, portal_with_a_stale_key, value):
    line = f"ansible-playbook rhpds.litemaas.key_sync -e litemaas_key_sync_dry_run={value}"
    proc, active = key_sync(ansible_env, tmp_path, proxy, portal_with_a_stale_key, line)
    assert "Dry run only" not in proc.stdout
    assert active == {"live": True, "gone": False}
    assert recap(proc.stdout)["changed"] == 2  # the dry run that always comes first, and the reconciliation

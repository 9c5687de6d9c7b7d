"""AgnosticD as it runs workloads, and RHDP as it shows their agnosticd_user_info output (facts:
../shared/reference/agnosticd-user-info.md).

``Layout`` installs the agnosticd_user_info stand-in (tests/support/agnosticd_user_info_action.py) the ways AgnosticD
has it: ``in-tree`` (agnosticd.core with its galaxy.yml in ``collections/`` next to the playbook, as AgnosticD v2
vendors it), ``galaxy`` (agnosticd.core installed with ansible-galaxy: MANIFEST.json, no galaxy.yml), ``legacy`` (the
legacy plugin in ``action_plugins/`` next to the playbook, no agnosticd.core) and ``none``. Its playbook does what
AgnosticD does around the workloads: run each workload with the runner's ``data_prefix`` as module_defaults (v2 only),
with ``output_dir`` and ``ACTION`` set; ``reset`` removes ``<ACTION>-user-{info,data}.yaml`` as AgnosticD does before
every run (outside the playbook, so that the recap counts only the workloads' changes).

``callback_body`` reads the files as AgnosticD's completion callback does; ``requester_email``, ``assignments`` and
``showroom_pages`` replay it through what RHDP's catalog and Showroom do with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

STAND_IN = Path(__file__).resolve().parent / "agnosticd_user_info_action.py"
LAYOUTS = ("in-tree", "galaxy", "legacy", "none")

MODULE_DOC = '''DOCUMENTATION = """
module: agnosticd_user_info
short_description: Report messages and data for the users of an AgnosticD environment
description: Stand-in for tests; the action plugin of the same name does the work.
author: test
options:
  msg: {type: raw, description: Messages for the requester.}
  body: {type: str, description: Message body.}
  data: {type: raw, description: Data, a dictionary.}
  data_prefix: {type: str, description: Prefix of every data key.}
  user: {type: str, description: The user the data and messages are for.}
"""
'''

PLAYBOOK = """---
- name: Run the workloads as AgnosticD does
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Run the workloads
{module_defaults}      block:
        - name: Run each workload
          ansible.builtin.include_role:
            name: "{{{{ workload }}}}"
          loop: "{{{{ workloads }}}}"
          loop_control:
            loop_var: workload
"""

MODULE_DEFAULTS = """      module_defaults:
        agnosticd.core.agnosticd_user_info:
          data_prefix: "{{ agnosticd_data_prefix | default('') }}"
"""


class Layout:
    """One AgnosticD checkout (``root``) with the plugin installed one way; ``env`` runs ansible-playbook in it."""

    def __init__(self, kind: str, root: Path, env: dict):
        assert kind in LAYOUTS, kind
        self.kind = kind
        self.root = root
        self.output_dir = root / "output"
        self.playbook = root / "main.yml"
        root.mkdir(parents=True, exist_ok=True)
        self.env = dict(env)
        if kind == "in-tree":
            self._collection(root / "collections" / "ansible_collections" / "agnosticd" / "core")
        elif kind == "galaxy":
            source = self._collection(root / "src" / "ansible_collections" / "agnosticd" / "core")
            built = root / "dist"
            self._galaxy("collection", "build", str(source), "--output-path", str(built))
            tarball = next(built.glob("agnosticd-core-*.tar.gz"))
            self._galaxy("collection", "install", str(tarball), "-p", str(root / "installed"))
            shutil.rmtree(root / "src")
            installed = root / "installed" / "ansible_collections" / "agnosticd" / "core"
            assert (installed / "MANIFEST.json").is_file() and not (installed / "galaxy.yml").exists()
            self.env["ANSIBLE_COLLECTIONS_PATH"] = self.env["ANSIBLE_COLLECTIONS_PATH"] + os.pathsep + str(root / "installed")
        elif kind == "legacy":
            (root / "action_plugins").mkdir()
            shutil.copy(STAND_IN, root / "action_plugins" / "agnosticd_user_info.py")
        v2 = kind in ("in-tree", "galaxy")
        self.playbook.write_text(PLAYBOOK.format(module_defaults=MODULE_DEFAULTS if v2 else ""))

    def _collection(self, path: Path) -> Path:
        (path / "plugins" / "action").mkdir(parents=True)
        (path / "plugins" / "modules").mkdir(parents=True)
        (path / "meta").mkdir()
        (path / "galaxy.yml").write_text(
            "namespace: agnosticd\nname: core\nversion: 1.0.0\nreadme: README.md\nauthors: [test]\nlicense: [GPL-3.0-or-later]\n")
        (path / "README.md").write_text("agnosticd.core stand-in for tests\n")
        (path / "meta" / "runtime.yml").write_text("---\nrequires_ansible: '>=2.16.0'\n")
        shutil.copy(STAND_IN, path / "plugins" / "action" / "agnosticd_user_info.py")
        (path / "plugins" / "modules" / "agnosticd_user_info.py").write_text(MODULE_DOC)
        return path

    def _galaxy(self, *args: str) -> None:
        binary = Path(self.env["PATH"].split(os.pathsep)[0]) / "ansible-galaxy"
        proc = subprocess.run([str(binary), *args], env=self.env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def reset(self, action: str = "provision") -> None:
        for name in ("info", "data"):
            (self.output_dir / f"{action}-user-{name}.yaml").unlink(missing_ok=True)

    def command(self, vars_file: Path) -> list:
        return ["ansible-playbook", str(self.playbook), "-e", f"@{vars_file}"]

    def extra_vars(self, workloads: list, action: str = "provision") -> dict:
        return {"workloads": workloads, "output_dir": str(self.output_dir), "ACTION": action}

    def files(self, action: str = "provision") -> dict:
        """name -> bytes of every ``<action>-user-*.yaml`` the plugin wrote."""
        if not self.output_dir.is_dir():
            return {}
        return {p.name: p.read_bytes() for p in sorted(self.output_dir.glob(f"{action}-user-*.yaml"))}


def callback_body(output_dir: Path, action: str = "provision") -> dict:
    """What AgnosticD's completion callback POSTs to RHDP."""

    def load(name: str, empty):
        path = output_dir / f"{action}-user-{name}.yaml"
        return (yaml.safe_load(path.read_text()) or empty) if path.is_file() else empty

    return {"event": "complete", "messages": load("info", []), "data": load("data", {}), "message_body": load("body", [])}


def requester_email(messages: list) -> list:
    """The lines of the requester's "ready" e-mail: the messages as AsciiDoc, a hard line break after each element,
    so the lines of a multi-line element run together as one paragraph."""
    return [" ".join(str(m).split("\n")) for m in messages]


def assignments(body: dict, mode: str) -> dict:
    """What each seat of a service is shown, by RHDP workshopUserMode: ``none`` one seat with the whole data and
    messages; ``single`` and ``multi`` one seat per ``users`` entry with only that entry (minus msg) and its messages."""
    data, users = body["data"], body["data"].get("users", {})
    if mode == "none":
        return {"": {"data": data, "messages": requester_email(body["messages"])}}
    assert mode in ("single", "multi"), mode
    if mode == "single":
        assert len(users) == 1, f"workshopUserMode single needs exactly one users entry, got {sorted(users)}"
    return {name: {"data": {k: v for k, v in entry.items() if k != "msg"},
                   "messages": entry["msg"].split("\n") if entry.get("msg") else []}
            for name, entry in users.items()}


def showroom_pages(body: dict) -> dict:
    """Showroom: one page per users entry, the shared data merged with that user's entry."""
    shared = {k: v for k, v in body["data"].items() if k != "users"}
    return {name: {**shared, **{k: v for k, v in entry.items() if k != "msg"}} for name, entry in body["data"].get("users", {}).items()}

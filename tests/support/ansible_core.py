"""The tests that run again with another ansible-core than the main virtualenv's.

``scripts/test.sh`` runs the whole suite with the ansible-core of ``requirements/dev.txt`` (the newest supported),
then the tests below once more with the oldest one ``meta/runtime.yml`` claims (``requirements/ansible-2.16.txt``):
``LITEMAAS_ANSIBLE_CORE_VENV=.work/ansible-2.16 python -m pytest -m ansible_core``. They cover what a user of that
version runs: ``ansible-doc`` of every module and role, every role's render mode (deploy, monitoring, day 2), the
modules against the real proxy, the workshop keys role, and the documented command lines with their ``-e`` values.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

# Node id prefixes (a file, a directory or one test).
SUBSET = (
    "tests/playbooks/test_ansible_core.py",
    "tests/playbooks/test_boolean_switches.py",
    "tests/playbooks/test_doc_commands.py",
    "tests/playbooks/test_doc_commands_cluster.py",
    "tests/playbooks/test_doc_commands_day2.py",
    "tests/playbooks/test_doc_commands_quickstart.py::test_catalog_item_deploys_the_platform_serves_and_registers_the_models",
    "tests/playbooks/test_artifact.py::test_installed_tarball_documents_every_module_and_role",
    "tests/roles/test_deploy_role_render.py",
    "tests/playbooks/test_monitoring.py",
    "tests/playbooks/test_day2.py",
    "tests/playbooks/test_upgrade.py",
    "tests/integration/modules/",
    "tests/integration/workshop/",
)

# Tests in those files that exercise no Ansible (shell scripts and the proxy package run by themselves).
EXCLUDE = (
    "tests/playbooks/test_day2.py::test_backup_and_restore_scripts_round_trip_real_databases",
    "tests/playbooks/test_day2.py::test_backup_script_keeps_only_the_newest",
    "tests/playbooks/test_day2.py::test_the_tool_ships_in_the_proxy_package",
    "tests/playbooks/test_day2.py::test_key_cleanup_cronjob_command_runs_against_a_real_proxy",
    "tests/playbooks/test_doc_commands_day2.py::test_curl_commands_read_the_proxy",
)

VENV_VARIABLE = "LITEMAAS_ANSIBLE_CORE_VENV"


def chosen_venv() -> Path | None:
    """The virtualenv of the ansible-core under test, or None for the main virtualenv's."""
    value = os.environ.get(VENV_VARIABLE, "")
    if not value:
        return None
    venv = Path(value).resolve()
    if not (venv / "bin" / "ansible-playbook").is_file():
        raise RuntimeError(f"{VENV_VARIABLE}={value}: no bin/ansible-playbook there (make it with scripts/lib.sh ensure_ansible_core_venv)")
    return venv


def apply_to(env: dict, collections_path: Path, venv: Path | None = None) -> dict:
    """Point an ansible environment at the chosen ansible-core (or ``venv``), keeping the main virtualenv's dependency
    collections."""
    venv = venv or chosen_venv()
    if venv is None:
        return env
    env = dict(env)
    env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")
    # That interpreter's sys.path holds no collection: name the main virtualenv's site-packages (kubernetes.core,
    # community.okd, community.postgresql, community.general from PyPI's ``ansible``) after this checkout.
    env["ANSIBLE_COLLECTIONS_PATH"] = os.pathsep.join([str(collections_path), sysconfig.get_paths()["purelib"]])
    # Modules run with the main virtualenv's Python (requests, psycopg2, kubernetes). ANSIBLE_PYTHON_INTERPRETER does
    # that for an inventory's hosts, but the implicit localhost of a play run without one (the documented command
    # lines) takes the controller's Python: an inventory naming localhost keeps those command lines as written.
    inventory = collections_path.parent / "ansible-core-inventory.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    env["ANSIBLE_INVENTORY"] = str(inventory)
    return env


def _selects(entry: str, nodeid: str) -> bool:
    return nodeid == entry or (nodeid.startswith(entry) and (entry.endswith("/") or nodeid[len(entry)] in ":["))


def matching(nodeid: str) -> list:
    """The SUBSET entries that select a test (none when EXCLUDE names it)."""
    if any(_selects(e, nodeid) for e in EXCLUDE):
        return []
    return [p for p in SUBSET if _selects(p, nodeid)]

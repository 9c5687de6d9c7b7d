"""The ansible-core range the collection claims is the range the test command runs.

``meta/runtime.yml`` requires_ansible names the oldest; ``requirements/ansible-<oldest>.txt`` pins it for the second
run of scripts/test.sh (tests/support/ansible_core.py); ``requirements/dev.txt`` pins the newest; the README states both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.playbooks.conftest import REPO, recap
from tests.roles.conftest import run_playbook, snapshot
from tests.support import ansible_core


def pinned(requirements: Path) -> Version:
    return Version(re.search(r"^ansible-core==(\S+)", requirements.read_text(), re.M).group(1))


def oldest_requirements() -> Path:
    minimum = Version(re.search(r"^>=\s*(\S+)$", yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["requires_ansible"]).group(1))
    return REPO / "requirements" / f"ansible-{minimum.major}.{minimum.minor}.txt"


def test_the_ansible_core_under_test_is_the_one_asked_for(ansible_env):
    venv = ansible_core.chosen_venv()
    expected = pinned(REPO / "requirements" / (f"{venv.name}.txt" if venv else "dev.txt"))
    out = subprocess.run(["ansible-playbook", "--version"], env=ansible_env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == f"ansible-playbook [core {expected}]"
    # The collections the roles use are found, from the main virtualenv, whichever ansible-core runs.
    listed = subprocess.run(["ansible-galaxy", "collection", "list", "--format", "json"], env=ansible_env, capture_output=True, text=True,
                            check=True).stdout
    for name in ("kubernetes.core", "community.okd", "community.postgresql", "community.general", "rhpds.litemaas"):
        assert f'"{name}"' in listed, name


def test_the_oldest_claimed_ansible_core_is_pinned_for_the_second_run():
    requirements = oldest_requirements()
    assert requirements.exists(), f"{requirements.name}: the oldest ansible-core meta/runtime.yml claims has no test run"
    oldest, newest = pinned(requirements), pinned(REPO / "requirements" / "dev.txt")
    assert SpecifierSet(yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["requires_ansible"]).contains(oldest)
    assert oldest < newest
    # scripts/test.sh builds and runs that one.
    script = (REPO / "scripts" / "test.sh").read_text()
    assert f"ensure_ansible_core_venv {oldest.major}.{oldest.minor}" in script
    # The README states the tested range.
    readme = (REPO / "README.md").read_text()
    assert f"ansible-core {oldest.major}.{oldest.minor} to {newest.major}.{newest.minor}" in readme


def test_the_dependency_collections_accept_the_oldest_ansible_core():
    oldest = pinned(oldest_requirements())
    root = Path(sysconfig.get_paths()["purelib"]) / "ansible_collections"
    for name in ("kubernetes/core", "community/okd", "community/postgresql", "community/general"):
        runtime = yaml.safe_load((root / name / "meta" / "runtime.yml").read_text())
        assert SpecifierSet(runtime["requires_ansible"]).contains(oldest), (name, runtime["requires_ansible"])


def test_a_deploy_render_of_one_ansible_core_is_left_unchanged_by_the_other(ansible_env, collections_path, work_dir):
    """Render with the ansible-core under test, then run the same render with the other end of the range into the same
    directory: nothing changes, byte for byte (generated secrets are read back, not made anew)."""
    if ansible_core.chosen_venv() is None:
        other_venv = REPO / ".work" / oldest_requirements().stem
        if not (other_venv / "bin" / "ansible-playbook").exists():
            pytest.skip(f"{other_venv} not built (scripts/test.sh builds it before pytest)")
        other = ansible_core.apply_to(ansible_env, collections_path, other_venv)
    else:
        other = dict(ansible_env, PATH=str(Path(sys.executable).parent) + os.pathsep + ansible_env["PATH"])
    this, other = (dict(e, KUBECONFIG=os.devnull) for e in (ansible_env, other))
    versions = [subprocess.run(["ansible-playbook", "--version"], env=e, capture_output=True, text=True, check=True).stdout.split("\n")[0]
                for e in (this, other)]
    assert versions[0] != versions[1], versions
    directory = work_dir / "cross-version-render"
    shutil.rmtree(directory, ignore_errors=True)
    first = run_playbook(this, "deploy.yml", directory, {}, "first")
    assert first.returncode == 0, first.output[-5000:]
    before = snapshot(directory)
    assert len([f for f in before if f.endswith(".yaml")]) > 20
    second = run_playbook(other, "deploy.yml", directory, {}, "second")
    assert second.returncode == 0, second.output[-5000:]
    assert snapshot(directory) == before, versions
    assert recap(second.output)["changed"] == 0, versions

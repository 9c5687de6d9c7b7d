"""The collection artifact: ``ansible-galaxy collection build`` packs the collection and nothing else, and the installed
tarball documents every module and role with ``ansible-doc``."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.playbooks.conftest import REPO

# Leftovers a working checkout collects: builds of the proxy package, test and tool state, local data.
LEFTOVERS = [
    "files/proxy/build/lib/litemaas_proxy/app.py",
    "files/proxy/dist/litemaas_proxy-0.1.0.tar.gz",
    "files/proxy/litemaas_proxy.egg-info/PKG-INFO",
    "files/proxy/litemaas_proxy/__pycache__/app.cpython-311.pyc",
    ".work/collections/README",
    "local-data/postgres/PG_VERSION",
    "files/local/local-data/redis.conf",
    ".pytest_cache/v/cache/lastfailed",
    ".hypothesis/examples/x",
    ".ruff_cache/CACHEDIR.TAG",
    ".venv/bin/python",
    "tests/output/junit.xml",
    "rhpds-litemaas-0.0.1.tar.gz",
    "plugins/modules/model.py.orig",
]
FORBIDDEN_PARTS = {"build", "dist", ".work", "local-data", "__pycache__", ".venv", ".pytest_cache", ".hypothesis", ".ruff_cache", "output"}


def _shipped_by_git() -> set:
    """Files git tracks or would add (not ignored): the only files the tarball may hold."""
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, check=True)
    return {name for name in proc.stdout.decode().split("\0") if name}


def _build(source: Path, out: Path, env: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["ansible-galaxy", "collection", "build", "--force", "--output-path", str(out), str(source)], env=env,
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    version = yaml.safe_load((source / "galaxy.yml").read_text())["version"]
    tarball = out / f"rhpds-litemaas-{version}.tar.gz"
    assert tarball.is_file(), sorted(p.name for p in out.iterdir())
    return tarball


def _members(tarball: Path) -> set:
    with tarfile.open(tarball) as tar:
        return {m.name for m in tar.getmembers() if m.isfile()}


@pytest.fixture(scope="module")
def built(ansible_env, tmp_path_factory) -> tuple:
    """The collection built from a copy of the checkout's files with every kind of leftover added, and its file list."""
    root = tmp_path_factory.mktemp("artifact")
    source = root / "src"
    for name in sorted(_shipped_by_git()):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    for name in LEFTOVERS:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("leftover\n")
    tarball = _build(source, root / "out", ansible_env)
    return tarball, _members(tarball), root


def test_the_tarball_holds_no_build_or_local_leftover(built):
    members = built[1]
    for name in LEFTOVERS:
        assert name not in members, name
    bad = sorted(m for m in members if FORBIDDEN_PARTS & set(m.split("/")[:-1]) or m.endswith((".pyc", ".orig", ".tar.gz"))
                 or ".egg-info" in m)
    assert bad == [], bad


def test_the_tarball_holds_the_collection(built):
    members = built[1]
    for name in ("MANIFEST.json", "FILES.json", "README.md", "LICENSE", "meta/runtime.yml", "files/proxy/Containerfile",
                 "files/proxy/pyproject.toml", "files/proxy/litemaas_proxy/__init__.py"):
        assert name in members, name
    modules = {p.name for p in (REPO / "plugins" / "modules").glob("*.py")}
    assert {m.split("/")[-1] for m in members if m.startswith("plugins/modules/")} == modules
    for role in sorted(p.name for p in (REPO / "roles").iterdir() if p.is_dir()):
        assert f"roles/{role}/meta/argument_specs.yml" in members, role
    for name in ("bench/", "scripts/", "requirements/", ".git/"):
        assert not [m for m in members if m.startswith(name)], name


def test_the_checkout_builds_without_ignored_files(ansible_env, tmp_path):
    """Built from the checkout as it is, whatever lies around in it: only files git would commit are packed."""
    members = _members(_build(REPO, tmp_path, ansible_env))
    extra = sorted(members - _shipped_by_git() - {"MANIFEST.json", "FILES.json"})
    assert extra == [], extra


def _ansible_doc(env: dict, kind: str, names: list) -> dict:
    proc = subprocess.run(["ansible-doc", "--json", "-t", kind] + names, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def test_installed_tarball_documents_every_module_and_role(built, ansible_env, tmp_path):
    tarball, members, dummy = built
    target = tmp_path / "collections"
    # Only the installed copy: no checkout link, no collections on sys.path.
    env = dict(ansible_env, ANSIBLE_COLLECTIONS_PATH=str(target), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false")
    env.pop("ANSIBLE_ROLES_PATH", None)
    proc = subprocess.run(["ansible-galaxy", "collection", "install", "--force", "--no-deps", "-p", str(target), str(tarball)], env=env,
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = target / "ansible_collections" / "rhpds" / "litemaas"
    assert (installed / "MANIFEST.json").is_file(), proc.stdout + proc.stderr

    modules = sorted(m.split("/")[-1][:-3] for m in members if m.startswith("plugins/modules/") and m.endswith(".py"))
    docs = _ansible_doc(env, "module", [f"rhpds.litemaas.{m}" for m in modules])
    assert sorted(docs) == [f"rhpds.litemaas.{m}" for m in modules]
    for name, doc in docs.items():
        assert doc["doc"]["filename"].startswith(str(installed)), (name, doc["doc"]["filename"])
        assert doc["doc"]["short_description"] and doc["doc"]["options"], name
        assert doc["examples"] and doc["return"], name

    roles = sorted({m.split("/")[1] for m in members if m.startswith("roles/") and m.endswith("meta/argument_specs.yml")})
    assert roles == sorted(p.name for p in (REPO / "roles").iterdir() if p.is_dir())
    for role in roles:
        doc = _ansible_doc(env, "role", [f"rhpds.litemaas.{role}"])[f"rhpds.litemaas.{role}"]
        assert doc["path"].startswith(str(target)), (role, doc["path"])
        assert "main" in doc["entry_points"], role
        for entry, spec in doc["entry_points"].items():
            assert spec.get("short_description"), (role, entry)
            for option, option_spec in (spec.get("options") or {}).items():
                assert option_spec.get("description"), (role, entry, option)

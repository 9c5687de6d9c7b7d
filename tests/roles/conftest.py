"""Render the deploy role (playbooks/deploy.yml in render mode) for several variable sets, all at once.

No cluster and no kubeconfig: ocp4_workload_litemaas_render_dir makes the role write every manifest it would apply.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "ocp4_workload_litemaas"

_SNAPSHOT_LOCK = threading.Lock()
PINNED_MASTER_KEY = "sk-pinned0123456789abcdefPINNED"

VARSETS = {
    "defaults": {},
    "ha_off": {"ocp4_workload_litemaas_ha_enabled": False,
               "ocp4_workload_litemaas_proxy_resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1500m", "memory": "1Gi"}}},
    "prebuilt_oauth_off": {
        "ocp4_workload_litemaas_proxy_image": "quay.io/example/litemaas-proxy:1.2.3",
        "ocp4_workload_litemaas_oauth_enabled": False,
        "ocp4_workload_litemaas_litellm_master_key": PINNED_MASTER_KEY,
        "ocp4_workload_litemaas_branding_enabled": False,
        "ocp4_workload_litemaas_proxy_workers": 3,
        "ocp4_workload_litemaas_proxy_listen_backlog": 1024,
        "ocp4_workload_litemaas_proxy_cors_extra_origins": ["https://chat.example.com"],
        "ocp4_workload_litemaas_proxy_config": {
            "router_settings": {"routing_strategy": "least-busy", "cooldown_time": 30},
            "litellm_settings": {"metrics_key_alias": True},
        },
    },
    "upstream_serviceaccount": {
        "ocp4_workload_litemaas_use_upstream_litellm": True,
        "ocp4_workload_litemaas_oauth_client_mode": "serviceaccount",
        "ocp4_workload_litemaas_namespace": "maas",
        "ocp4_workload_litemaas_cluster_domain": "apps.ocp.test",
        "ocp4_workload_litemaas_quota_enabled": True,
        "ocp4_workload_litemaas_proxy_allowed_namespaces": ["workshop-notebooks"],
        "ocp4_workload_litemaas_postgres_storage_class": "gp3-csi",
        "ocp4_workload_litemaas_initial_admin_users": ["admin", "opentlc-mgr"],
    },
}


@dataclass
class Run:
    name: str
    directory: Path
    returncode: int
    output: str
    extra_vars: dict
    files: dict = field(default_factory=dict)  # relative path -> bytes
    _docs: list | None = field(default=None, repr=False)

    def docs(self) -> list[dict]:
        if self._docs is not None:
            return self._docs
        out = []
        for rel in sorted(self.files):
            for doc in yaml.safe_load_all(self.files[rel]):
                if doc:
                    doc = dict(doc)
                    doc["__file__"] = rel
                    out.append(doc)
        self._docs = out
        return out

    def find(self, kind: str, name: str | None = None) -> list[dict]:
        return [d for d in self.docs() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]

    def one(self, kind: str, name: str) -> dict:
        found = self.find(kind, name)
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
        return found[0]


def snapshot(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def proxy_source_snapshot(base: Path) -> Path:
    """A frozen copy of files/proxy/ (so edits to the proxy during a test run cannot race the comparisons), plus files
    the build context must leave out."""
    target = base / "proxy-src"
    with _SNAPSHOT_LOCK:
        if target.exists():
            return target
        staging = base / "proxy-src.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(REPO / "files" / "proxy", staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "*.egg-info"))
        (staging / "litemaas_proxy" / "__pycache__").mkdir(parents=True, exist_ok=True)
        (staging / "litemaas_proxy" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\x00compiled")
        (staging / "tests").mkdir(exist_ok=True)
        (staging / "tests" / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
        # What a development checkout collects (pip install -e, builds, tool caches): all git-ignored, none shipped.
        for junk in ("litemaas_proxy.egg-info/PKG-INFO", "build/lib/litemaas_proxy/app.py", "dist/litemaas_proxy-0.1.0.tar.gz",
                     ".pytest_cache/v/cache/lastfailed", "litemaas_proxy/app.py.orig"):
            (staging / junk).parent.mkdir(parents=True, exist_ok=True)
            (staging / junk).write_text("left over\n")
        staging.rename(target)
    return target


def run_playbook(env: dict, playbook: str, directory: Path, extra_vars: dict, name: str) -> Run:
    vars_file = directory.parent / f"{directory.name}.vars.json"
    source = proxy_source_snapshot(directory.parent)
    vars_file.write_text(json.dumps({"ocp4_workload_litemaas_render_dir": str(directory),
                                     "ocp4_workload_litemaas_proxy_source_dir": str(source), **extra_vars}))
    proc = subprocess.run(
        ["ansible-playbook", "-v", str(REPO / "playbooks" / playbook), "-e", f"@{vars_file}"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )
    run = Run(name, directory, proc.returncode, proc.stdout + proc.stderr, extra_vars)
    if directory.exists():
        run.files = {k: v for k, v in snapshot(directory).items() if k.endswith(".yaml")}
    return run


@pytest.fixture(scope="session")
def render_env(ansible_env) -> dict:
    env = dict(ansible_env)
    # No cluster may be reached: point the kubeconfig at nothing.
    env["KUBECONFIG"] = os.devnull
    env.pop("K8S_AUTH_KUBECONFIG", None)
    return env


@pytest.fixture(scope="session")
def renders(render_env, work_dir) -> dict:
    """First render of every variable set (in parallel), then a re-render of the defaults into the same directory."""
    base = work_dir / "deploy-role"
    base.mkdir(parents=True, exist_ok=True)
    jobs = {name: (base / name, extra) for name, extra in VARSETS.items()}
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(run_playbook, render_env, "deploy.yml", d, extra, name) for name, (d, extra) in jobs.items()}
        runs = {name: f.result() for name, f in futures.items()}
    for run in runs.values():
        assert run.returncode == 0, f"render {run.name} failed:\n{run.output[-6000:]}"
    return runs


@pytest.fixture(scope="session")
def second_renders(renders, render_env) -> dict:
    """In parallel: re-render 'defaults' into the same directory (must change nothing); render a scratch copy of
    'ha_off' and destroy it; on a copy of the 'ha_off' directory, render with HA on, then off again (stale files pruned)."""
    defaults, ha_off = renders["defaults"], renders["ha_off"]
    before = snapshot(defaults.directory)
    base = defaults.directory.parent
    scratch = base / "destroy-me"
    toggled = base / "ha-toggled"
    shutil.copytree(ha_off.directory, toggled)

    def destroy_chain():
        rendered = run_playbook(render_env, "deploy.yml", scratch, VARSETS["ha_off"], "scratch")
        return rendered, run_playbook(render_env, "destroy.yml", scratch, VARSETS["ha_off"], "destroyed"), snapshot(scratch)

    def toggle_chain():
        on = run_playbook(render_env, "deploy.yml", toggled, {}, "ha-on")
        return on, run_playbook(render_env, "deploy.yml", toggled, VARSETS["ha_off"], "ha-off-again"), snapshot(toggled)

    with ThreadPoolExecutor(max_workers=3) as pool:
        again = pool.submit(run_playbook, render_env, "deploy.yml", defaults.directory, {}, "defaults-again")
        destroy = pool.submit(destroy_chain)
        toggle = pool.submit(toggle_chain)
        again, (scratch_render, destroyed, scratch_files), (ha_on, ha_off_again, toggled_files) = again.result(), destroy.result(), toggle.result()
    assert scratch_render.returncode == 0, scratch_render.output[-4000:]
    return {"before": before, "again": again, "after": snapshot(defaults.directory), "destroyed": destroyed,
            "scratch_files": scratch_files, "ha_on": ha_on, "ha_off_again": ha_off_again, "toggled_files": toggled_files}

"""Helpers to run this collection's playbooks with ansible-playbook (render mode, check mode, against the local proxy)."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
PROXY_SRC = REPO / "files" / "proxy" / "litemaas_proxy"


class PlaybookRunner:
    def __init__(self, env: dict, tmp_root: Path):
        self.env = env
        self.tmp_root = tmp_root

    def run(self, playbook: str, extra_vars: dict | None = None, check: bool = False, syntax: bool = False, expect_rc: int | None = 0,
            timeout: float = 600, more: list | None = None) -> subprocess.CompletedProcess:
        args = ["ansible-playbook", str(PLAYBOOKS / playbook)] + [str(PLAYBOOKS / m) for m in more or []] + ["-i", "localhost,", "-c", "local"]
        if extra_vars:
            vars_file = self.tmp_root / f"vars-{uuid.uuid4().hex[:8]}.json"
            vars_file.write_text(json.dumps(extra_vars))
            args += ["-e", f"@{vars_file}"]
        if check:
            args += ["--check", "--diff"]
        if syntax:
            args.append("--syntax-check")
        return self._exec(args, playbook, expect_rc, timeout)

    def run_file(self, path: Path, check: bool = False, expect_rc: int | None = 0, timeout: float = 600) -> subprocess.CompletedProcess:
        args = ["ansible-playbook", str(path), "-i", "localhost,", "-c", "local"] + (["--check"] if check else [])
        return self._exec(args, path.name, expect_rc, timeout)

    def _exec(self, args, playbook, expect_rc, timeout):
        proc = subprocess.run(args, env=self.env, cwd=str(REPO), capture_output=True, text=True, check=False, timeout=timeout)
        if expect_rc is not None:
            assert proc.returncode == expect_rc, f"{playbook} exited {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
        return proc


def changed_tasks(output: str) -> str:
    """The tasks of a playbook's output that reported a change, for an assertion message."""
    lines, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK"):
            task = line
        elif line.startswith("changed"):
            lines += [task, line]
    return "\n".join(lines)


def recap(output: str) -> dict:
    """The PLAY RECAP counters of localhost."""
    match = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output)
    assert match, output[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def load_docs(path: Path) -> list:
    with open(path) as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def load_dir(root: Path) -> dict:
    """{relative path: [documents]} for every .yaml file under root."""
    return {str(p.relative_to(root)): load_docs(p) for p in sorted(root.rglob("*.yaml"))}


def exported_series(metrics_text: str) -> set:
    """Series names a Prometheus text exposition can produce, from its ``# TYPE`` lines and samples
    (counters: <name>_total and <name>_created; histograms: _bucket, _sum, _count, _created)."""
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split(None, 3)[2:]
            kind = kind.strip()
            if kind == "counter":
                base = name[:-6] if name.endswith("_total") else name
                names.update({base + "_total", base + "_created"})
            elif kind == "histogram":
                names.update({name + "_bucket", name + "_sum", name + "_count", name + "_created"})
            elif kind == "summary":
                names.update({name, name + "_sum", name + "_count", name + "_created"})
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


PROMQL_WORDS = {
    "sum", "by", "without", "rate", "irate", "increase", "histogram_quantile", "max", "min", "avg", "count", "topk", "bottomk",
    "absent", "or", "and", "unless", "on", "ignoring", "group_left", "group_right", "clamp_min", "clamp_max", "le", "offset",
    "humanize", "vector", "label_values", "bool", "label_replace", "last_over_time", "max_over_time",
}


def promql_metrics(expr: str) -> set:
    """Metric names used in a PromQL expression (label matchers, grouping labels, strings and functions removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return {n for n in names if n not in PROMQL_WORDS and not n.startswith("$") and not re.fullmatch(r"\d.*|e\d+", n)}


@pytest.fixture(scope="session")
def playbook(ansible_env, work_dir) -> PlaybookRunner:
    root = work_dir / "playbook-tests"
    root.mkdir(parents=True, exist_ok=True)
    return PlaybookRunner(ansible_env, root)


@pytest.fixture()
def render_dir(work_dir) -> Path:
    path = work_dir / "render" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    return path

"""The command lines written in the docs: every shell code block of the READMEs and docs/*.md, and the usage lines in
the playbooks' header comments.

A command line is what a reader pastes into a shell: backslash continuations and a quoted JSON value spread over lines
are one line, a trailing ``# comment`` is not part of it, a line that is only a comment is no command. In a code block
without a language (tables of figures and commands mixed) only the lines that start with a program are commands.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

REPO = Path(__file__).resolve().parents[2]

DOCS = ("README.md", "files/proxy/README.md", "bench/README.md", "bench/KEYS.md")
SHELL_LANGUAGES = ("bash", "sh", "shell", "console")
# How a command line starts in a code block without a language.
PROGRAMS = re.compile(r"^(ansible-playbook|ansible-doc|ansible-galaxy|bash|python3?|\.venv/bin/python|curl|export|oc|pip|litemaas-proxy)\b")


@dataclass
class DocCommand:
    text: str  # as written, continuations kept (what the shell is given)
    places: list = field(default_factory=list)  # "docs/day2.md:12"

    @property
    def key(self) -> str:
        """The command with continuations and runs of blank space folded: how the test names it."""
        return " ".join(self.text.replace("\\\n", " ").split())


def _strip_comment(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` outside quotes, at the start or after blank space)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _open_quote(text: str) -> bool:
    quote = None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
    return quote is not None


def _logical_lines(lines: list) -> list:
    """[(first line index, command text)] of a block's lines."""
    out, buf, start = [], [], 0
    for i, raw in enumerate(lines):
        line = _strip_comment(raw) if not buf or not _open_quote("\n".join(buf)) else raw.rstrip()
        if not buf:
            if not line.strip():
                continue
            start = i
        buf.append(line)
        text = "\n".join(buf)
        if text.endswith("\\") or _open_quote(text):
            continue
        out.append((start, text.strip()))
        buf = []
    if buf:
        out.append((start, "\n".join(buf).strip()))
    return out


def _from_markdown(path: Path) -> list:
    rel = str(path.relative_to(REPO))
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        match = re.match(r"^( *)```(\w*)\s*$", lines[i])  # also a block indented in a list item
        if not match:
            i += 1
            continue
        indent, language, start = len(match.group(1)), match.group(2), i + 1
        end = start
        while end < len(lines) and not lines[end].lstrip().startswith("```"):
            end += 1
        if language in SHELL_LANGUAGES or language == "":
            for first, text in _logical_lines([line[indent:] for line in lines[start:end]]):
                if language == "" and not PROGRAMS.match(text):
                    continue
                found.append((f"{rel}:{start + first + 1}", text))
        i = end + 1
    return found


def _from_playbook(path: Path) -> list:
    rel = str(path.relative_to(REPO))
    lines = path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        match = re.match(r"^#\s+(ansible-playbook .*)$", lines[i])
        if not match:
            i += 1
            continue
        start, buf = i, [match.group(1)]
        while (buf[-1].rstrip().endswith("\\") or _open_quote("\n".join(buf))) and i + 1 < len(lines) and lines[i + 1].startswith("#"):
            i += 1
            buf.append(lines[i][1:])
        found += [(f"{rel}:{start + 1 + first}", text) for first, text in _logical_lines(buf)]
        i += 1
    return found


def sources() -> list:
    return [REPO / d for d in DOCS] + sorted((REPO / "docs").glob("*.md")) + sorted((REPO / "playbooks").glob("*.yml"))


def documented_commands() -> dict:
    """{key: DocCommand} of every command line in the docs; one entry for a text written in several places."""
    commands: dict = {}
    for path in sources():
        found = _from_playbook(path) if path.suffix == ".yml" else _from_markdown(path)
        for place, text in found:
            command = DocCommand(text)
            commands.setdefault(command.key, command).places.append(place)
    return commands


def text_of(key: str) -> str:
    """The command as the docs write it (continuations and all)."""
    return documented_commands()[key].text


def sh(key: str, env: dict, cwd: Path, rc: Optional[int] = 0, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a documented command line exactly as written (through bash); its exit status must be ``rc`` (None: any)."""
    proc = subprocess.run(["bash", "-c", text_of(key)], env=env, cwd=str(cwd), capture_output=True, text=True, timeout=timeout, check=False)
    assert rc is None or proc.returncode == rc, f"{key}\nexited {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return proc


def inventory(root: Path, group_vars: dict | None = None) -> Path:
    """An inventory naming localhost (with this virtualenv's Python, which has the modules' libraries) and group_vars."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "hosts").write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    if group_vars:
        (root / "group_vars").mkdir(exist_ok=True)
        (root / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars))
    return root


# What this machine's cluster lacks, as a user's inventory would say: route hosts no DNS resolves, no image build (the
# proxy image named), pods that are ready at once (a short wait).
CLUSTER_VARS = {"ocp4_workload_litemaas_verify_routes": False, "ocp4_workload_litemaas_proxy_image": "quay.io/example/litemaas-proxy:1.0",
                "ocp4_workload_litemaas_wait_timeout": 60}
KUBECTL = Path(__file__).resolve().parents[2] / ".work" / "kubernetes-client" / "usr" / "bin" / "kubectl"


def kube_home(root: Path, fake, ansible_env: dict, group_vars: dict, oc: bool = False) -> dict:
    """The environment of a user whose ``$HOME/.kube/config`` names the in-memory API server ``fake``, with an
    inventory of ``group_vars`` (and, with ``oc``, Debian's kubectl as ``oc`` first on PATH)."""
    home = root / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(yaml.safe_dump(fake.kubeconfig()))
    env = dict(ansible_env, HOME=str(home), ANSIBLE_INVENTORY=str(inventory(root / "inventory", group_vars)),
               ANSIBLE_LOCAL_TEMP=str(root / "ansible-tmp"))
    if oc:
        assert KUBECTL.is_file(), f"{KUBECTL} is missing: scripts/lib.sh ensure_kubectl_standin unpacks it (scripts/test.sh does)"
        bin_dir = root / "bin"
        bin_dir.mkdir()
        (bin_dir / "oc").symlink_to(KUBECTL)
        env["PATH"] = str(bin_dir) + os.pathsep + ansible_env["PATH"]
    env.pop("KUBECONFIG", None)
    return env

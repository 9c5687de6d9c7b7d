"""The module reference generator and the operator docs."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.playbooks.conftest import PLAYBOOKS, REPO


def test_module_reference_generator(tmp_path):
    out = tmp_path / "module-reference.md"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_module_docs.py"), "--output", str(out)],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr  # 1 would mean a module whose documentation cannot be read
    text = out.read_text()
    assert "documentation could not be read" not in text
    modules = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py"))
    for name in modules:
        # Each module has its own section with its parameters, read from its DOCUMENTATION.
        assert f"\n## {name}\n" in text, name
        section = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        for heading in ("### Options", "### Examples", "### Return values"):
            assert f"\n{heading}\n" in section, (name, heading)
    section = text.split("## capacity_check", 1)[1].split("\n## ", 1)[0]
    assert "| `ttft_p95_threshold` | float |  | `5.0` |" in section
    assert "### Return values" in section and "`capacity_check.ttft_seconds`" in section
    # --check agrees with what was just written.
    check = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_module_docs.py"), "--check", "--output", str(out)],
                           capture_output=True, text=True, check=False, timeout=300)
    assert check.returncode == 0, check.stderr


def test_docs_link_to_existing_files_and_playbooks():
    docs = REPO / "docs"
    for name in ("architecture.md", "deployment.md", "day2.md", "monitoring.md", "troubleshooting.md"):
        text = (docs / name).read_text()
        for target in re.findall(r"\]\(([a-z0-9_.-]+\.md)(?:#[^)]*)?\)", text):
            assert (docs / target).exists(), f"{name} links to missing {target}"
        for playbook in re.findall(r"ansible-playbook rhpds\.litemaas\.([a-z_]+)", text):
            assert (PLAYBOOKS / f"{playbook}.yml").exists(), f"{name} mentions missing playbook {playbook}"


def test_troubleshooting_covers_the_ten_common_failures():
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    headings = re.findall(r"^## (\d+)\. ", text, flags=re.M)
    assert headings == [str(i) for i in range(1, 11)]
    for words in ("models/sync", "subscriptions_model_id_fkey", "old version", "migrat", "key_sync", "FLUSHALL", "redirect_uri_mismatch",
                  "504", "/key/info", "OOMKilled"):
        assert words in text, words

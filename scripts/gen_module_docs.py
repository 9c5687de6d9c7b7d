#!/usr/bin/env python3
"""Write docs/module-reference.md from the modules' own documentation.

Each module's DOCUMENTATION (with its doc fragments), EXAMPLES and RETURN are read with
``ansible-doc --json`` against this checkout installed as the collection ``rhpds.litemaas`` (a temporary
collections path with a symlink), so the reference shows exactly what ``ansible-doc`` shows.

Usage: python scripts/gen_module_docs.py [--check] [--output docs/module-reference.md]
  --check   exit 1 (and write nothing) when the file is not up to date
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COLLECTION = "rhpds.litemaas"


def module_names() -> list:
    return sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))


def ansible_doc(names: list) -> tuple:
    """``({name: ansible-doc JSON entry}, {name: error})`` for the given modules of this checkout."""
    tmp = Path(tempfile.mkdtemp(prefix="litemaas-doc-"))
    docs, errors = {}, {}
    try:
        target = tmp / "ansible_collections" / "rhpds"
        target.mkdir(parents=True)
        (target / "litemaas").symlink_to(REPO, target_is_directory=True)
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="true", ANSIBLE_NOCOLOR="1")
        binary = shutil.which("ansible-doc", path=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")) or "ansible-doc"
        proc = subprocess.run([binary, "--json", "-t", "module"] + [f"{COLLECTION}.{n}" for n in names],
                              env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode == 0:
            return {key.split(".")[-1]: value for key, value in json.loads(proc.stdout).items()}, {}
        for name in names:  # one at a time, to find which module's documentation is broken
            one = subprocess.run([binary, "--json", "-t", "module", f"{COLLECTION}.{name}"], env=env, capture_output=True, text=True, timeout=120)
            if one.returncode == 0:
                docs.update({key.split(".")[-1]: value for key, value in json.loads(one.stdout).items()})
            else:
                errors[name] = " ".join(one.stderr.replace(str(target / "litemaas") + "/", "").split())[:400]
        return docs, errors
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def text(value) -> str:
    """Documentation text (a string or a list of paragraphs) as one Markdown cell: Ansible markup made readable."""
    if value is None:
        return ""
    parts = value if isinstance(value, list) else [value]
    out = " ".join(str(p).strip() for p in parts)
    for macro in ("C", "O", "V", "RV", "E", "I", "B", "M"):
        out = _replace_macro(out, macro)
    return out.replace("|", "\\|").replace("\n", " ")


def _replace_macro(s: str, macro: str) -> str:
    token = macro + "("
    result, i = [], 0
    while True:
        j = s.find(token, i)
        if j < 0 or (j > 0 and (s[j - 1].isalnum() or s[j - 1] == "_")):
            if j < 0:
                result.append(s[i:])
                return "".join(result)
            result.append(s[i:j + len(token)])
            i = j + len(token)
            continue
        depth, k = 1, j + len(token)
        while k < len(s) and depth:
            depth += {"(": 1, ")": -1}.get(s[k], 0)
            k += 1
        inner = s[j + len(token):k - 1]
        result.append(s[i:j])
        if macro in ("B",):
            result.append(f"**{inner}**")
        elif macro in ("I",):
            result.append(f"*{inner}*")
        elif macro == "O" or macro == "RV":
            result.append(f"`{inner.split('=')[0]}`" if "=" not in inner else f"`{inner}`")
        else:
            result.append(f"`{inner}`")
        i = k


def fmt_default(option: dict) -> str:
    if "default" not in option or option.get("default") is None:
        return ""
    return f"`{json.dumps(option['default'])}`"


def options_table(options: dict, prefix: str = "") -> list:
    rows = []
    for name in sorted(options):
        opt = options[name]
        kind = opt.get("type", "str")
        if kind == "list" and opt.get("elements"):
            kind = f"list / {opt['elements']}"
        extras = []
        if opt.get("choices"):
            extras.append("choices: " + ", ".join(f"`{c}`" for c in opt["choices"]))
        if opt.get("aliases"):
            extras.append("aliases: " + ", ".join(f"`{a}`" for a in opt["aliases"]))
        desc = text(opt.get("description"))
        if extras:
            desc += " (" + "; ".join(extras) + ")"
        rows.append(f"| `{prefix}{name}` | {kind} | {'yes' if opt.get('required') else ''} | {fmt_default(opt)} | {desc} |")
        if opt.get("suboptions"):
            rows.extend(options_table(opt["suboptions"], prefix=f"{prefix}{name}."))
    return rows


def return_table(values: dict, prefix: str = "") -> list:
    rows = []
    for name in sorted(values or {}):
        val = values[name]
        rows.append(f"| `{prefix}{name}` | {val.get('type', '')} | {text(val.get('returned'))} | {text(val.get('description'))} |")
        if isinstance(val.get("contains"), dict):
            rows.extend(return_table(val["contains"], prefix=f"{prefix}{name}."))
    return rows


def render(docs: dict, errors: dict | None = None) -> str:
    lines = [
        "# Module reference",
        "",
        "Generated by `python scripts/gen_module_docs.py` from each module's own documentation (the same text as",
        f"`ansible-doc {COLLECTION}.<module>`). Do not edit by hand.",
        "",
        "| Module | Purpose |",
        "|---|---|",
    ]
    for name in sorted(docs):
        lines.append(f"| [`{COLLECTION}.{name}`](#{name}) | {text(docs[name]['doc'].get('short_description'))} |")
    for name in sorted(errors or {}):
        lines.append(f"| `{COLLECTION}.{name}` | (documentation could not be read: {text(errors[name])}) |")
    for name in sorted(docs):
        entry = docs[name]
        doc = entry["doc"]
        lines += ["", f"## {name}", "", f"**{COLLECTION}.{name}**: {text(doc.get('short_description'))}", ""]
        for para in doc.get("description") or []:
            lines.append(f"- {text(para)}")
        lines += ["", "### Options", "", "| Option | Type | Required | Default | Description |", "|---|---|---|---|---|"]
        lines += options_table(doc.get("options") or {})
        if doc.get("notes"):
            lines += ["", "### Notes", ""]
            lines += [f"- {text(n)}" for n in doc["notes"]]
        if doc.get("attributes"):
            lines += ["", "### Attributes", "", "| Attribute | Support | Description |", "|---|---|---|"]
            for attr, spec in sorted(doc["attributes"].items()):
                lines.append(f"| {attr} | {spec.get('support', '')} | {text(spec.get('description'))} |")
        if entry.get("examples"):
            lines += ["", "### Examples", "", "```yaml", entry["examples"].strip("\n"), "```"]
        if entry.get("return"):
            lines += ["", "### Return values", "", "| Key | Type | Returned | Description |", "|---|---|---|---|"]
            lines += return_table(entry["return"])
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the output is up to date")
    parser.add_argument("--output", default=str(REPO / "docs" / "module-reference.md"))
    args = parser.parse_args(argv)
    names = module_names()
    docs, errors = ansible_doc(names)
    content = render(docs, errors)
    for name, error in sorted(errors.items()):
        print(f"{name}: documentation could not be read: {error}", file=sys.stderr)
    out = Path(args.output)
    if args.check:
        current = out.read_text() if out.exists() else ""
        if current != content:
            print(f"{out} is out of date: run python scripts/gen_module_docs.py", file=sys.stderr)
            return 1
        print(f"{out} is up to date ({len(names)} modules)")
        return 0
    out.write_text(content)
    print(f"wrote {out} ({len(docs)} of {len(names)} modules)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

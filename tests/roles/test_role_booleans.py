"""Every boolean variable a role takes is converted where it is read.

A value from ``-e name=false``, an inventory or a catalog item may be the string ``"false"``: truthy in Jinja on
ansible-core 2.16-2.18, refused in a conditional on 2.19. The roles declare their booleans as ``type: bool`` in
``meta/argument_specs.yml`` (which refuses values that are not booleans, naming the variable) and read each one
through ``| bool`` (``| default(...)`` may come first). This test parses every Jinja expression in the roles and
playbooks, finds each read of such a variable and checks what it goes through.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import jinja2
import yaml
from jinja2 import nodes

REPO = Path(__file__).resolve().parents[2]
# Task keywords whose value is a bare Jinja expression (no braces).
CONDITIONAL_KEYS = {"when", "that", "failed_when", "changed_when", "until"}
ENV = jinja2.Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])


def boolean_variables() -> dict:
    """{variable: role} for every ``type: bool`` option of every role's argument specs."""
    found = {}
    for spec_file in sorted(REPO.glob("roles/*/meta/argument_specs.yml")):
        specs = yaml.safe_load(spec_file.read_text())["argument_specs"]
        for entry in specs.values():
            for name, option in (entry.get("options") or {}).items():
                if option.get("type") == "bool":
                    found[name] = spec_file.parts[-3]
    return found


def _strings(value, key=None):
    """(key, string) for every string in a loaded YAML document, with the mapping key it sits under."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, key)
    elif isinstance(value, str):
        yield key, value


def expressions(path: Path):
    """(where, Jinja source) for every template in a task/vars/playbook file, or the whole file for a .j2 template."""
    if path.suffix == ".j2":
        yield str(path.relative_to(REPO)), path.read_text()
        return
    for doc in yaml.safe_load_all(path.read_text()):
        for key, text in _strings(doc):
            if key in CONDITIONAL_KEYS:
                yield f"{path.relative_to(REPO)} ({key}: {text.strip()[:60]})", "{{ " + text + " }}"
            elif "{{" in text or "{%" in text:
                yield f"{path.relative_to(REPO)} ({key})", text


def unconverted_reads(source: str, names) -> list:
    """Names among ``names`` read somewhere in ``source`` without going through ``| bool``."""
    with warnings.catch_warnings():
        # Regular expressions in string literals ('\\.j2$') are fine for Ansible; Jinja's lexer warns about them.
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ENV.parse(source)
    parent = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in node.iter_child_nodes():
            parent[id(child)] = node
            stack.append(child)
    bad = []
    for name in tree.find_all(nodes.Name):
        if name.ctx != "load" or name.name not in names:
            continue
        up = parent.get(id(name))
        while isinstance(up, nodes.Filter) and up.name == "default" and up.node is not None:
            up = parent.get(id(up))
        # ``x is defined`` reads no truth value; anything else must be ``x | bool``.
        if isinstance(up, nodes.Filter) and up.name == "bool":
            continue
        if isinstance(up, nodes.Test) and up.name in ("defined", "undefined", "none", "boolean"):
            continue
        bad.append(name.name)
    return bad


def files_to_check():
    for pattern in ("roles/*/tasks/*.yml", "roles/*/handlers/*.yml", "roles/*/vars/*.yml", "roles/*/templates/**/*.j2", "playbooks/*.yml"):
        yield from sorted(REPO.glob(pattern))


def test_every_role_declares_booleans_found():
    # The scan below is only as good as this list: the roles' safety switches must be in it.
    names = boolean_variables()
    for expected in ("litemaas_restore_confirm", "litemaas_scale_force", "litemaas_key_sync_dry_run", "ocp4_workload_litemaas_remove",
                     "ocp4_workload_litemaas_monitoring_no_log", "ocp4_workload_litellm_virtual_keys_no_log"):
        assert expected in names, expected


def test_the_scanner_finds_unconverted_reads():
    names = {"flag"}
    assert unconverted_reads("{{ 'x' if flag else 'y' }}", names) == ["flag"]
    assert unconverted_reads("{{ not flag }}", names) == ["flag"]
    assert unconverted_reads("{{ flag | default(false) }}", names) == ["flag"]
    assert unconverted_reads("{% if flag %}x{% endif %}", names) == ["flag"]
    assert unconverted_reads("{{ flag | to_json }}", names) == ["flag"]
    assert unconverted_reads("{{ 'x' if flag | bool else 'y' }}", names) == []
    assert unconverted_reads("{{ not (flag | default(false) | bool) }}", names) == []
    assert unconverted_reads("{{ flag is defined }}", names) == []
    assert unconverted_reads("{% set flag = 1 %}{{ other }}", names) == []


def test_booleans_are_converted_where_read():
    names = boolean_variables()
    checked = list(files_to_check())
    assert len(checked) > 100  # every role's tasks, vars and templates, and the playbooks
    problems = [f"{where}: {name} is read without | bool"
                for path in checked for where, source in expressions(path) for name in unconverted_reads(source, names)]
    assert problems == []

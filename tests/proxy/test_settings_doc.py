"""Settings and docs come from the code: the settings table (config.SETTINGS) is the one list of settings, the
README documents exactly those, a bad value of any of them names it, and nothing reads the raw config later."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest
import yaml

PROXY_SRC = Path(__file__).resolve().parents[2] / "files" / "proxy"
sys.path.insert(0, str(PROXY_SRC))

from litemaas_proxy import config  # noqa: E402

README = PROXY_SRC / "README.md"
PACKAGE = PROXY_SRC / "litemaas_proxy"
CLI_ENV = {"HOST", "PORT", "NUM_WORKERS", "CONFIG_FILE_PATH", "LITELLM_LOG"}  # read by cli.py (argparse defaults)
FIXED_FIELDS = {"connect_timeout", "upstream_connections"}  # Settings fields that are not settings
MAX_LINES = 400


def test_readme_settings_table_is_the_settings_table():
    text = README.read_text(encoding="utf-8")
    begin, end = "<!-- settings table: begin -->\n", "<!-- settings table: end -->"
    assert begin in text and end in text
    table = text[text.index(begin) + len(begin):text.index(end)]
    assert table == config.settings_markdown(), ("files/proxy/README.md's settings table differs from config.SETTINGS; print the table with "
                                                 "python -c 'from litemaas_proxy.config import settings_markdown; print(settings_markdown())'")


def test_every_settings_field_is_in_the_table_and_back():
    fields = {f.name for f in dataclasses.fields(config.Settings)} - FIXED_FIELDS
    table = [s.field for s in config.SETTINGS]
    assert len(table) == len(set(table))
    assert set(table) == fields
    sources = [src for s in config.SETTINGS for src in s.sources]
    assert len(sources) == len(set(sources)), "a source read by two settings"


def test_readme_names_no_setting_that_does_not_exist():
    text = README.read_text(encoding="utf-8")
    env_known = {name for s in config.SETTINGS for name in s.env} | CLI_ENV
    env_named = set(re.findall(r"\b((?:LITEMAAS|LITELLM|REDIS)_[A-Z0-9_]+)\b", text))
    assert env_named - env_known == set(), f"README names environment variables the proxy does not read: {sorted(env_named - env_known)}"
    config_known = {path for s in config.SETTINGS for path in s.config}
    for path in set(re.findall(r"\b((?:general|router|litellm)_settings(?:\.\w+)+)", text)):
        assert path in config_known or any(k.startswith(path + ".") for k in config_known), f"README names {path}, which is not a setting"
    for name in env_known - CLI_ENV:
        assert f"`{name}`" in text, f"{name} is not documented"


def bad_value(spec):
    return {config.positive: "ten", config.non_negative: "-1", config.whole: "1.5", config.whole_positive: "0", config.on_off: "maybe",
            config.duration: "1y", config.timezone_name: "Nowhere/Never", config.redis_failure_mode: "half-open", config.a_list: "one",
            config.a_mapping: "one"}.get(spec.parse)


CHECKED = [s for s in config.SETTINGS if bad_value(s) is not None]


@pytest.mark.parametrize("spec", CHECKED, ids=[s.field for s in CHECKED])
def test_a_bad_value_names_the_setting(spec, tmp_path):
    bad = bad_value(spec)
    for source in spec.sources:
        if source.startswith("env:"):
            name = source[4:]
            with pytest.raises(ValueError) as err:
                config.load_settings(None, env={name: bad})
        else:
            name = source
            cfg: dict = {}
            node = cfg
            *parents, leaf = source.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = bad
            path = tmp_path / "config.yaml"
            path.write_text(yaml.safe_dump(cfg))
            with pytest.raises(ValueError) as err:
                config.load_settings(str(path), env={})
        message = str(err.value)
        assert name in message and str(bad) in message, (source, message)


def test_values_are_typed():
    s = config.load_settings(None, env={"LITEMAAS_DB_POOL_SIZE": "4", "REDIS_SSL": "on", "REDIS_HOST": "r", "LITEMAAS_ACCESS_LOG": "Yes",
                                        "LITEMAAS_REQUEST_TIMEOUT": "30.5", "LITELLM_RATE_LIMIT_WINDOW_SIZE": "120"})
    assert (s.db_pool_size, s.redis_url, s.access_log, s.request_timeout, s.rate_limit_window) == (4, "rediss://r:6379/0", True, 30.5, 120)
    assert isinstance(s.db_pool_size, int) and isinstance(s.rate_limit_window, int)


def test_no_module_reads_the_raw_config_or_the_environment_after_start_up():
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        source = path.read_text(encoding="utf-8")
        assert "raw_config" not in source, rel
        if rel in ("config.py", "cli.py") or rel.startswith("tools/"):
            continue  # settings are read here (the tools are separate programs)
        if rel == "routing.py":
            # os.environ/NAME in a model's litellm_params is resolved when its deployment is built, as LiteLLM does.
            assert len(re.findall(r"os\.environ\.get\(|getenv\(", source)) == 1 and "def _resolve(" in source, rel
            continue
        assert not re.search(r"os\.environ|getenv\(", source), f"{rel} reads the environment: take a field of Settings instead"


def test_no_proxy_file_is_long_without_a_reason():
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES:
            head = "\n".join(lines[:20])
            assert "Long file:" in head, f"{path.relative_to(PACKAGE)} has {len(lines)} lines: split it or say why at its top ('Long file: ...')"


def test_readme_module_map_matches_the_code():
    text = README.read_text(encoding="utf-8")
    layers = text[text.index("## Layers"):text.index("## Design for speed")]
    named = set(re.findall(r"^\| ([^|]+) \|", layers, re.M)) - {"module", "---"}
    listed = {m for cell in named for m in re.findall(r"`([\w/]+)`", cell)}
    modules = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("").as_posix()
        if rel.endswith("__init__") or rel == "__main__":
            continue
        if rel.startswith("queries/"):
            rel = "queries/"
        elif rel == "tools/_http":
            continue  # the key-cleanup tool's HTTP client
        modules.add(rel)
    assert modules - listed == set(), f"modules missing from the README's module map: {sorted(modules - listed)}"
    assert listed - modules == set(), f"the README's module map names modules that do not exist: {sorted(listed - modules)}"

"""docs/agents.md: every command block runs exactly as written against the real proxy (with the documented variables
set to its address, a fresh key and a model), prints the stub model's answer and is charged to the token; the Codex
provider block is a valid config whose settings reach the proxy's Responses API the way Codex calls it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import openai
import pytest
import tomllib

from tests.proxy.conftest import INPUT_COST, OUTPUT_COST, new_key, uid
from tests.proxy.test_agent_apis import spend_of
from tests.support.proxy import stub_models

DOC = Path(__file__).resolve().parents[2] / "docs" / "agents.md"
CODEX_MODEL = "granite-3-3-8b-instruct"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)


@pytest.fixture(scope="module")
def doc_proxy(proxy_factory, stub_upstream):
    return proxy_factory(database="agents_doc", models=stub_models(stub_upstream.url, names=("stub-model", CODEX_MODEL)))


def run_block(block: str, env: dict) -> str:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{block}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def test_every_command_block_runs_as_written(doc_proxy):
    commands = blocks("sh")
    assert len(commands) == 2, commands  # the OpenAI block and the Anthropic block
    key = new_key(doc_proxy, key_alias=uid("agents-doc"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
    env.update(LITEMAAS_URL=doc_proxy.url, LITEMAAS_KEY=key, LITEMAAS_MODEL="stub-model",
               PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""))
    assert run_block(commands[0], env) == "tok0 tok1 tok2 tok3 tok4\n"  # the Responses API: "Say hello" is 2 tokens, 5 back
    assert run_block(commands[1], env) == " ".join(f"tok{i}" for i in range(64)) + "\n"  # the Messages API: max_tokens=64
    assert spend_of(doc_proxy, key, 2) == pytest.approx((2 + 2) * INPUT_COST + (5 + 64) * OUTPUT_COST, rel=1e-9)


def test_codex_provider_block(doc_proxy):
    (config,) = blocks("toml")
    parsed = tomllib.loads(config)
    provider = parsed["model_providers"][parsed["model_provider"]]
    assert (provider["wire_api"], provider["env_key"], parsed["model"]) == ("responses", "LITEMAAS_KEY", CODEX_MODEL)
    assert provider["base_url"].endswith("/v1")
    key = new_key(doc_proxy, key_alias=uid("codex"))
    # What Codex sends: the provider's base_url (here the test proxy's), the key from env_key, a streamed turn with
    # its instructions, the conversation as input items and its shell tool.
    client = openai.OpenAI(base_url=doc_proxy.url + "/v1", api_key=key, max_retries=0, timeout=30)
    shell = {"type": "function", "name": "shell", "description": "Run a command", "strict": False,
             "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}, "required": ["command"]}}
    events = list(client.responses.create(
        model=parsed["model"], instructions="You are a coding agent.", stream=True, store=False, tools=[shell], tool_choice="auto",
        parallel_tool_calls=False, input=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list the files"}]}],
    ))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "tok0 tok1 tok2 tok3 tok4"
    assert spend_of(doc_proxy, key, 1) == pytest.approx((5 + 3) * INPUT_COST + 5 * OUTPUT_COST, rel=1e-9)

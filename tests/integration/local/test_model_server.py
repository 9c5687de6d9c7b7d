"""The local model server (files/local/model_server.py).

The prompt formatting and request parsing are tested directly. The server itself is tested with the real model when
the local model's virtualenv exists (``bash scripts/local.sh`` creates it under local-data/; or point
LITEMAAS_LOCAL_MODEL_PYTHON and LITEMAAS_LOCAL_MODEL_GGUF at one); otherwise that test is skipped, as the model
takes minutes to build.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.support.services import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[3]
SERVER = REPO / "files" / "local" / "model_server.py"


def load_server_module():
    spec = importlib.util.spec_from_file_location("litemaas_local_model_server", SERVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ms = load_server_module()


def test_gemma_prompt_single_user_turn():
    assert ms.gemma_prompt([{"role": "user", "content": "Hi"}]) == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_gemma_prompt_system_goes_in_front_of_the_first_user_turn_and_assistant_is_model():
    prompt = ms.gemma_prompt([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "Three"},
        {"role": "user", "content": "Four?"},
    ])
    assert prompt == ("<start_of_turn>user\nBe brief.\n\nOne\ntwo<end_of_turn>\n"
                      "<start_of_turn>model\nThree<end_of_turn>\n"
                      "<start_of_turn>user\nFour?<end_of_turn>\n"
                      "<start_of_turn>model\n")


@pytest.mark.parametrize("messages, error", [
    ([], "'messages' must be a non-empty list"),
    (None, "'messages' must be a non-empty list"),
    ([{"role": "wizard", "content": "x"}], "unknown message role 'wizard'"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
     "this model reads text only; content part of type 'image_url' is not supported"),
])
def test_gemma_prompt_errors(messages, error):
    with pytest.raises(ms.RequestError) as exc:
        ms.gemma_prompt(messages)
    assert str(exc.value) == error


def test_sampling_defaults_and_limits():
    params = ms.sampling({}, n_ctx=4096)
    assert params["max_tokens"] == ms.DEFAULT_MAX_TOKENS
    assert params["stop"] == ["<end_of_turn>", "<start_of_turn>"]
    params = ms.sampling({"max_completion_tokens": 99999, "stop": "END", "temperature": 0, "seed": 7}, n_ctx=512)
    assert params["max_tokens"] == 512
    assert params["stop"][-1] == "END"
    assert params["temperature"] == 0.0 and params["seed"] == 7
    with pytest.raises(ms.RequestError, match="'max_tokens' must be a positive integer"):
        ms.sampling({"max_tokens": 0}, n_ctx=512)
    with pytest.raises(ms.RequestError, match="'stop' must be a string or a list of strings"):
        ms.sampling({"stop": [1]}, n_ctx=512)


def _model_runtime():
    python = os.environ.get("LITEMAAS_LOCAL_MODEL_PYTHON") or str(REPO / "local-data" / "model-venv" / "bin" / "python")
    gguf = os.environ.get("LITEMAAS_LOCAL_MODEL_GGUF") or str(REPO / "local-data" / "models" / "gemma-3-270m-q4_k_m.gguf")
    if not (Path(python).exists() and Path(gguf).exists()):
        return None
    if subprocess.run([python, "-c", "import llama_cpp"], capture_output=True, check=False).returncode != 0:
        return None
    return python, gguf


def _post(url, body, stream=False):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        return resp.read().decode() if stream else json.load(resp)


@pytest.mark.slow
def test_real_model_answers_chat_stream_and_completions(tmp_path):
    runtime = _model_runtime()
    if runtime is None:
        pytest.skip("the local model is not installed (bash scripts/local.sh installs it under local-data/)")
    python, gguf = runtime
    port = free_port()
    log = open(tmp_path / "model.log", "wb")
    proc = subprocess.Popen([python, str(SERVER), "--model", gguf, "--model-name", "gemma-3-270m", "--port", str(port), "--threads", "2",
                             "--n-ctx", "1024"], stdout=log, stderr=log)
    try:
        wait_for_port(port, timeout=300, proc=proc)
        base = f"http://127.0.0.1:{port}/v1"
        with urllib.request.urlopen(base + "/models", timeout=30) as resp:
            assert [m["id"] for m in json.load(resp)["data"]] == ["gemma-3-270m"]
        reply = _post(base + "/chat/completions", {"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Say hello."}],
                                                   "max_tokens": 16, "temperature": 0, "seed": 1})
        assert reply["object"] == "chat.completion"
        text = reply["choices"][0]["message"]["content"]
        assert text.strip() and "<end_of_turn>" not in text
        usage = reply["usage"]
        assert usage["prompt_tokens"] > 5 and 0 < usage["completion_tokens"] <= 16
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        raw = _post(base + "/chat/completions", {"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Count to five."}],
                                                 "max_tokens": 12, "stream": True, "stream_options": {"include_usage": True}}, stream=True)
        events = [line[len("data: "):] for line in raw.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
        assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:-1]).strip()
        done = _post(base + "/completions", {"model": "gemma-3-270m", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0})
        assert done["object"] == "text_completion" and done["choices"][0]["text"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()

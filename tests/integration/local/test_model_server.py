"""The local model server: llama-cpp-python's own server (``llama_cpp.server``) with our chat format registered.

The prompt the chat format builds is tested directly (no llama.cpp needed). The server is tested with the real model
when the local model's virtualenv exists (``bash scripts/local.sh`` creates it under local-data/; or point
LITEMAAS_LOCAL_MODEL_PYTHON and LITEMAAS_LOCAL_MODEL_GGUF at one): it must answer the known questions right, in chat
and streaming chat, and behave as the library documents for completions, ``/v1/models`` and bad requests. Without the
model that test is skipped, as the model takes minutes to build.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.services import free_port, stop_process, wait_for_port

REPO = Path(__file__).resolve().parents[3]
SERVER = REPO / "files" / "local" / "model_server.py"
EXAMPLES = ("Question: What is the capital of Italy?\nAnswer: Rome.\n\n"
            "Question: Who discovered penicillin?\nAnswer: Alexander Fleming.\n\n")


def load_server_module():
    spec = importlib.util.spec_from_file_location("litemaas_local_model_server", SERVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ms = load_server_module()


def test_one_question_follows_the_two_examples():
    assert ms.plain_qa_prompt([{"role": "user", "content": "What is 2+2?"}]) == EXAMPLES + "Question: What is 2+2?\nAnswer:"
    assert ms.STOP == ["\n\n", "Question:"]
    assert ms.CHAT_FORMAT == "litemaas-plain-qa"


def test_system_first_earlier_turns_as_pairs_and_text_parts_joined():
    prompt = ms.plain_qa_prompt([
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "Who wrote"}, {"type": "text", "text": "Hamlet?"}]},
        {"role": "assistant", "content": "Shakespeare."},
        {"role": "user", "content": "And Faust?\n\nThe play."},
    ])
    assert prompt == ("Answer briefly.\n\n" + EXAMPLES + "Question: Who wrote Hamlet?\nAnswer: Shakespeare.\n\n"
                      "Question: And Faust? The play.\nAnswer:")
    # A blank line is a stop sequence: none may come from the user's text.
    assert "\n\n" not in prompt.split(EXAMPLES)[1].replace("\nAnswer: Shakespeare.\n\n", "")


def test_two_user_turns_in_a_row_keep_both_questions():
    prompt = ms.plain_qa_prompt([{"role": "user", "content": "First?"}, {"role": "user", "content": "Second?"}])
    assert prompt.endswith("Question: First?\nAnswer:\n\nQuestion: Second?\nAnswer:")


def _model_runtime():
    python = os.environ.get("LITEMAAS_LOCAL_MODEL_PYTHON") or str(REPO / "local-data" / "model-venv" / "bin" / "python")
    gguf = os.environ.get("LITEMAAS_LOCAL_MODEL_GGUF") or str(REPO / "local-data" / "models" / "gemma-3-270m-q4_k_m.gguf")
    if not (Path(python).exists() and Path(gguf).exists()):
        return None
    if subprocess.run([python, "-c", "import llama_cpp.server"], capture_output=True, check=False).returncode != 0:
        return None
    return python, gguf


def _post(url, body, stream=False):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        return resp.read().decode() if stream else json.load(resp)


def _chat(base, question, **extra):
    body = {"model": "gemma-3-270m", "messages": [{"role": "user", "content": question}], "max_tokens": 32, "temperature": 0}
    body.update(extra)
    return _post(base + "/chat/completions", body, stream=bool(extra.get("stream")))


@pytest.fixture(scope="module")
def real_model(tmp_path_factory):
    runtime = _model_runtime()
    if runtime is None:
        pytest.skip("the local model is not installed (bash scripts/local.sh installs it under local-data/)")
    python, gguf = runtime
    port = free_port()
    log_path = tmp_path_factory.mktemp("model") / "model.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([python, str(SERVER), "--model", gguf, "--model_alias", "gemma-3-270m", "--chat_format", ms.CHAT_FORMAT,
                                 "--host", "127.0.0.1", "--port", str(port), "--n_threads", "2", "--n_ctx", "1024"],
                                stdout=log, stderr=log, start_new_session=True)
    try:
        wait_for_port(port, timeout=300, proc=proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process(proc, timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("question, fact", [("What is the capital of France?", "Paris"), ("What is 2+2?", "4"),
                                            ("Who wrote Hamlet?", "Shakespeare")])
def test_real_model_answers_right_in_chat(real_model, question, fact):
    reply = _chat(real_model, question)
    assert reply["object"] == "chat.completion" and reply["model"] == "gemma-3-270m"
    text = reply["choices"][0]["message"]["content"]
    assert fact in text, text
    # The stop sequences end the answer: no next question, no blank line.
    assert "Question" not in text and "\n\n" not in text
    assert reply["choices"][0]["finish_reason"] == "stop"
    usage = reply["usage"]
    assert usage["prompt_tokens"] > 20 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.slow
def test_real_model_streams_the_right_answer(real_model):
    raw = _chat(real_model, "What is the capital of France?", stream=True)
    events = [line[len("data: "):] for line in raw.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "Paris" in text, text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.slow
def test_real_model_lists_itself_completes_text_and_refuses_too_long_a_conversation(real_model):
    with urllib.request.urlopen(real_model + "/models", timeout=30) as resp:
        assert [m["id"] for m in json.load(resp)["data"]] == ["gemma-3-270m"]
    done = _post(real_model + "/completions", {"model": "gemma-3-270m", "prompt": "Question: What is the capital of Spain?\nAnswer:",
                                               "max_tokens": 8, "temperature": 0, "stop": ["\n"]})
    assert done["object"] == "text_completion" and "Madrid" in done["choices"][0]["text"]
    # The library's own error for a conversation longer than the context (the fixture serves n_ctx 1024).
    with pytest.raises(urllib.error.HTTPError) as err:
        _chat(real_model, "Paris " * 1500)
    assert err.value.code == 400
    error = json.loads(err.value.read().decode())["error"]
    assert error["code"] == "context_length_exceeded" and "maximum context length is 1024 tokens" in error["message"]

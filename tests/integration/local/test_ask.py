"""files/local/ask.py: how an answer is judged, the question set, and the measure command against the stub model."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ASK = REPO / "files" / "local" / "ask.py"

_spec = importlib.util.spec_from_file_location("litemaas_local_ask", ASK)
ask = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ask)


@pytest.mark.parametrize("answer, expect, verdict", [
    (" Paris.", ["Paris"], "OK"),
    ("paris, of course", ["Paris"], "OK"),
    ("2+2=4.", ["4", "four"], "OK"),
    ("Four.", ["4", "four"], "OK"),
    ("42", ["4", "four"], "WRONG"),  # a whole word, not a digit inside a number
    ("Parisian food", ["Paris"], "WRONG"),
    ("mendatanguser", ["Paris"], "WRONG"),
    ("", ["Paris"], "EMPTY"),
    ("  \n", ["Paris"], "EMPTY"),
    ("H2O.", ["H2O"], "OK"),
])
def test_verdict(answer, expect, verdict):
    assert ask.verdict(answer, expect) == verdict


def test_the_default_question_set_starts_with_the_three_of_the_demo():
    items = ask.load_questions(ask.QUESTIONS)
    assert [i["question"] for i in items[:3]] == ["What is the capital of France?", "What is 2+2?", "Who wrote Hamlet?"]
    assert len(items) >= 10


@pytest.mark.parametrize("content, error", [
    ("[]", "expected a non-empty list"),
    ('[{"question": "Q?"}]', "item 0 needs a non-empty 'question' string and a non-empty 'expect' list of strings"),
    ('[{"question": "Q?", "expect": ["a"]}, {"question": "", "expect": ["b"]}]', "item 1 needs"),
    ("{not json", "cannot read the questions from"),
])
def test_bad_question_sets_are_refused_naming_the_item(tmp_path, content, error):
    path = tmp_path / "q.json"
    path.write_text(content)
    with pytest.raises(ask.ConfigError, match=error):
        ask.load_questions(path)


def test_measure_reports_each_answer_and_the_accuracy(stub_upstream, tmp_path):
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([{"question": "Say something.", "expect": ["tok0"]}, {"question": "Capital of France?", "expect": ["Paris"]}]))
    run = subprocess.run([sys.executable, str(ASK), "measure", "--base-url", stub_upstream.url, "--model", "stub-model", "--questions",
                          str(questions), "--max-tokens", "3"], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("OK ") and lines[0].endswith('Say something. -> "tok0 tok1 tok2"')
    assert lines[1].startswith("WRONG ") and lines[1].endswith('Capital of France? -> "tok0 tok1 tok2"  (expected Paris)')
    assert lines[2].startswith(f"stub-model at {stub_upstream.url}, temperature 0: 1 of 2 right (50%)")


def test_measure_of_an_unreachable_server_fails_each_request_and_exits_1(tmp_path):
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps([{"question": "Capital of France?", "expect": ["Paris"]}]))
    from tests.support.services import free_port

    run = subprocess.run([sys.executable, str(ASK), "measure", "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--model", "m",
                          "--questions", str(questions), "--timeout", "5"], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1
    assert run.stdout.startswith("FAILED (HTTP -): ") and "0 of 1 right (0%)" in run.stdout

"""Regex guardrails: prebuilt patterns (pure logic), and through the live proxy: refusal before the call, masking
after it (JSON and streams), configuration in the config file and per key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.proxy.conftest import client, new_key, uid
from tests.support.proxy import http_json
from tests.support.services import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "files" / "proxy"))

from litemaas_proxy.guardrails import Active, Guardrail, GuardrailConfigError  # noqa: E402

CARD = "4111 1111 1111 1111"  # a Luhn-valid test card number


@pytest.mark.parametrize("patterns,text,label", [
    (["credit_card"], f"pay with {CARD} now", "credit_card"),
    (["credit_card"], "card 5500-0000-0000-0004", "credit_card"),
    (["national_id"], "my SSN is 078-05-1120", "us_ssn"),
    (["national_id"], "NI number JG 10 37 84 C", "uk_nino"),
    (["national_id"], "DNI 12345678Z", "es_dni"),
    (["pii"], "IBAN GB82 WEST 1234 5698 7654 32", "iban"),
    (["api_key"], "key sk-proj-abcdefghijklmnopqrstuvwx", "openai_api_key"),
    (["api_key"], "AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
    (["api_key"], "token ghp_" + "a" * 36, "github_token"),
    (["api_key"], "-----BEGIN RSA PRIVATE KEY-----", "private_key"),
    (["(?i)project\\s+falcon"], "about Project  Falcon", "custom pattern"),
])
def test_prebuilt_patterns_match(patterns, text, label):
    assert Guardrail("g", "pre_call", patterns).find(text) == label


@pytest.mark.parametrize("patterns,text", [
    (["credit_card"], "order 1234 5678 9012 3456"),  # fails the Luhn check
    (["national_id"], "DNI 12345678A"),  # wrong check letter
    (["pii"], "IBAN GB00 WEST 1234 5698 7654 32"),  # wrong checksum
    (["api_key"], "the sk-short key"),
])
def test_prebuilt_patterns_ignore_lookalikes(patterns, text):
    assert Guardrail("g", "pre_call", patterns).find(text) is None


def test_redact_and_config_errors():
    g = Guardrail("g", "post_call", ["credit_card", "email"], mask="[X]")
    assert g.redact(f"card {CARD}, mail a.b@example.org, order 1234 5678 9012 3456") == "card [X], mail [X], order 1234 5678 9012 3456"
    with pytest.raises(GuardrailConfigError, match="invalid regular expression"):
        Guardrail("g", "pre_call", ["(unclosed"])
    with pytest.raises(GuardrailConfigError, match="mode"):
        Guardrail("g", "sometimes", ["email"])
    with pytest.raises(GuardrailConfigError, match="no patterns"):
        Guardrail("g", "pre_call", [])
    assert Guardrail.from_config({"guardrail_name": "x", "litellm_params": {"guardrail": "regex", "mode": "post_call", "patterns": "email"}}).mode \
        == "post_call"


GUARDRAILS = [
    {"guardrail_name": "block-cards", "litellm_params": {"guardrail": "regex", "mode": "pre_call", "patterns": ["credit_card"], "default_on": True}},
    {"guardrail_name": "redact-output", "litellm_params": {"guardrail": "regex", "mode": "post_call", "patterns": ["tok[13]\\b"]}},
    {"guardrail_name": "redact-across-events", "litellm_params": {"guardrail": "regex", "mode": "post_call", "patterns": ["tok2 tok3"]}},
    {"guardrail_name": "mask-secrets", "litellm_params": {"guardrail": "regex", "mode": "pre_call", "action": "mask", "patterns": ["api_key"],
                                                          "mask": "<secret>"}},
]


@pytest.fixture(scope="module")
def gp(proxy_factory):
    return proxy_factory(database=uid("guardrails").replace("-", "_"), config_extra={"guardrails": GUARDRAILS})


def ask(p, key, content, **kw):
    return client(p, key).chat.completions.create(model="stub-model", messages=[{"role": "user", "content": content}], **kw)


def test_default_guardrail_refuses_before_the_call(gp, stub_upstream):
    key = new_key(gp)
    before = stub_upstream.stats()["requests"]
    with pytest.raises(openai.BadRequestError) as err:
        ask(gp, key, f"my card is {CARD}")
    body = err.value.body
    assert "guardrail 'block-cards'" in body["message"] and "credit_card" in body["message"] and CARD not in body["message"]
    assert body["type"] == "guardrail_violation"
    assert stub_upstream.stats()["requests"] == before  # never reached the model
    # Lookalike numbers pass, and so does the master key's request without a card.
    assert ask(gp, key, "order 1234 5678 9012 3456").choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    status, data, dummy = http_json("POST", gp.url + "/v1/completions", {"model": "stub-model", "prompt": ["fine", f"x {CARD}"]},
                                    {"Authorization": f"Bearer {gp.master_key}"})
    assert status == 400 and "block-cards" in data["error"]["message"]


def test_post_call_guardrail_masks_json_and_stream_for_keys_that_name_it(gp):
    masked_key = new_key(gp, metadata={"guardrails": ["redact-output"]})
    plain_key = new_key(gp)
    assert ask(gp, masked_key, "hi").choices[0].message.content == "tok0 [REDACTED] tok2 [REDACTED] tok4"
    assert ask(gp, plain_key, "hi").choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    chunks = list(ask(gp, masked_key, "hi", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 [REDACTED] tok2 [REDACTED] tok4"
    text = client(gp, masked_key).completions.create(model="stub-model", prompt="x", max_tokens=2).choices[0].text
    assert text == "tok0 [REDACTED]"
    # The config file's default guardrail still applies to this key.
    with pytest.raises(openai.BadRequestError):
        ask(gp, masked_key, CARD)


def test_stream_masking_catches_a_match_split_across_events(gp, stub_upstream):
    # The stub streams "tok0 tok1" | " tok2" | " tok3" | " tok4": the match "tok2 tok3" spans two events.
    key = new_key(gp, metadata={"guardrails": ["redact-across-events"]})
    chunks = list(ask(gp, key, "hi", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 [REDACTED] tok4"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert ask(gp, key, "hi").choices[0].message.content == "tok0 tok1 [REDACTED] tok4"


def test_held_back_stream_text_is_sent_even_without_finish_reason():
    def event(content):
        return b"data: " + orjson.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                         "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}) + b"\n\n"

    active = Active([], [Guardrail("g", "post_call", ["credit_card"])])
    out = active.mask_events([event("card 4111 11"), event("11 1111 1111 ok")]) + active.mask_events([b"data: [DONE]\n\n"])
    text = "".join(c["delta"]["content"] for e in out if e.startswith(b"data: {") for c in orjson.loads(e[6:])["choices"])
    assert text == "card [REDACTED] ok" and out[-1] == b"data: [DONE]\n\n"
    assert orjson.loads(out[-2][6:])["id"] == "c1"


def test_pre_call_mask_action_rewrites_the_input(gp, stub_upstream):
    key = new_key(gp, metadata={"guardrails": ["mask-secrets"]})
    ask(gp, key, "use sk-proj-abcdefghijklmnopqrstuvwx and AKIAIOSFODNN7EXAMPLE please")
    sent = stub_upstream.stats()["recent"][-1]["json"]["messages"][0]["content"]
    assert sent == "use <secret> and <secret> please"


def test_inline_guardrail_in_key_metadata(gp):
    inline = {"guardrail_name": "no-national-ids", "mode": "pre_call", "patterns": ["national_id"]}
    key = new_key(gp, metadata={"guardrails": [inline]})
    with pytest.raises(openai.BadRequestError) as err:
        client(gp, key).chat.completions.create(model="stub-model", messages=[
            {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "SSN 078-05-1120"}]}])
    assert "guardrail 'no-national-ids'" in err.value.body["message"]
    assert ask(gp, new_key(gp), "SSN 078-05-1120").choices  # other keys are not affected
    # Changing the key's metadata takes effect (the key cache is invalidated by the update).
    assert gp.admin("POST", "/key/update", {"key": key, "metadata": {"guardrails": []}})[0] == 200
    assert ask(gp, key, "SSN 078-05-1120").choices


def test_unknown_guardrail_name_on_a_key_is_refused(gp):
    key = new_key(gp, metadata={"guardrails": ["does-not-exist"]})
    with pytest.raises(openai.BadRequestError) as err:
        ask(gp, key, "hi")
    assert "Guardrail 'does-not-exist'" in err.value.body["message"] and "block-cards" in err.value.body["message"]


def test_guardrail_outcomes_in_metrics(gp):
    key = new_key(gp)
    with pytest.raises(openai.BadRequestError):
        ask(gp, key, CARD)
    dummy, text, dummy = http_json("GET", gp.url + "/metrics")
    seen = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "litellm_guardrail_requests_total":
                seen[(s.labels["guardrail_name"], s.labels["outcome"])] = s.value
            if s.name == "litellm_proxy_failed_requests_metric_total" and s.labels["status_code"] == "400":
                seen["failed-400"] = s.value
    assert seen[("block-cards", "blocked")] >= 1 and seen[("block-cards", "passed")] >= 1
    assert seen[("redact-output", "masked")] >= 1 and seen["failed-400"] >= 1


def test_broken_guardrail_config_stops_the_proxy(proxy_factory):
    p = proxy_factory(database=uid("badguard").replace("-", "_"), start=False,
                      config_extra={"guardrails": [{"guardrail_name": "bad", "litellm_params": {"mode": "pre_call", "patterns": ["(oops"]}}]})
    assert "guardrail 'bad': invalid regular expression" in start_fails(p)


def start_fails(p) -> str:
    """Run the proxy once with ``p``'s config and environment; it must exit with an error. Returns its stderr."""
    p.write_config()
    proc = subprocess.run([sys.executable, "-m", "litemaas_proxy", "--host", "127.0.0.1", "--port", str(free_port()), "--config", str(p.config_path)],
                          env=p.env(), cwd=str(p.work_dir), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    return proc.stderr

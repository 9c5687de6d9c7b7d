#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE), a license compatible with the GNU General Public License version 3

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: capacity_check
short_description: Drive simulated attendees through an OpenAI-compatible endpoint and judge time to first token
version_added: "0.1.0"
description:
  - Starts O(attendees) concurrent simulated attendees. Each sends O(requests_per_attendee) chat completions, one after
    the other, to C({api_url}/v1/chat/completions) for O(model), streamed by default, with one of O(api_keys)
    (attendee I(i) uses key I(i mod len(api_keys))).
  - Measures time to first token (the first content chunk of a stream; the whole answer without streaming), total
    latency and the gaps between chunks, and reports percentiles, errors by kind and a pass/fail verdict against
    O(ttft_p95_threshold), O(ttft_p50_threshold) and O(max_error_rate).
  - Meant as a pre-event check of a workshop's model capacity through the proxy. It changes nothing, but it does
    spend tokens, so in check mode no request is sent.
author:
  - rhpds.litemaas maintainers (@rhpds)
options:
  api_key:
    description:
      - Optional. The proxy's master key. When given, the module first reads the proxy's model list (C(GET /model/info))
        and fails at once when O(model) is not served, instead of reporting every request as failed.
      - The attendees never use it; they send O(api_keys).
      - If not set, the value of E(LITEMAAS_MASTER_KEY) (or E(LITELLM_MASTER_KEY)) is used.
    type: str
    required: false
    aliases: [master_key, litellm_master_key]
  api_keys:
    description:
      - Virtual keys used by the attendees, round robin. One key per attendee reproduces per-key limits of a workshop.
    type: list
    elements: str
    required: true
  model:
    description: Model name to request.
    type: str
    required: true
  attendees:
    description: Number of concurrent simulated attendees.
    type: int
    default: 10
  requests_per_attendee:
    description: Requests each attendee sends, one after the other.
    type: int
    default: 3
  ramp_up:
    description: Seconds over which attendees start (evenly spread). V(0) starts them all at once.
    type: float
    default: 0
  prompt:
    description: User message sent with every request.
    type: str
    default: Explain in two sentences what a virtual API key is.
  max_tokens:
    description: C(max_tokens) of every request.
    type: int
    default: 64
  stream:
    description: Stream the answers (server-sent events). Without streaming, time to first token is the whole latency.
    type: bool
    default: true
  ttft_p95_threshold:
    description: The check fails when the 95th percentile of time to first token (seconds) is above this.
    type: float
    default: 5.0
  ttft_p50_threshold:
    description: Optional; the check also fails when the median time to first token (seconds) is above this.
    type: float
  max_error_rate:
    description: The check fails when the share of failed requests (0 to 1) is above this.
    type: float
    default: 0.01
  fail_on_threshold:
    description: Fail the task (with all the results) when the check does not pass. Otherwise report RV(passed) only.
    type: bool
    default: false
  request_timeout:
    description:
      - Seconds to wait for a connection or for the next piece of an answer.
      - If not set, the value of E(LITEMAAS_REQUEST_TIMEOUT) is used.
    type: float
    default: 120
extends_documentation_fragment:
  - rhpds.litemaas.proxy_api
notes:
  - Supports check mode; in check mode no chat request is sent and RV(capacity_check.skipped) is true (with O(api_key),
    the model list is still read).
  - Uses the collection's proxy client (one keep-alive connection per attendee thread) and only the Python standard
    library on the managed node.
  - In the C(rhpds.litemaas.litemaas) action group, so C(module_defaults) for C(group/rhpds.litemaas.litemaas) set its
    connection options.
"""

EXAMPLES = r"""
- name: Check that 60 attendees get a first token within 3 s (p95) on granite
  rhpds.litemaas.capacity_check:
    api_url: https://litellm.apps.example.com
    api_keys: "{{ workshop_keys }}"
    model: granite-3-2-8b-instruct
    attendees: 60
    requests_per_attendee: 3
    ramp_up: 10
    ttft_p95_threshold: 3
    max_error_rate: 0.02
  register: capacity

- name: Show the verdict
  ansible.builtin.debug:
    msg: "{{ capacity.msg }}"
"""

RETURN = r"""
passed:
  description: Whether every threshold was met. False in check mode.
  returned: always
  type: bool
  sample: true
capacity_check:
  description: Measurements and verdict.
  returned: always
  type: dict
  contains:
    skipped:
      description: True in check mode (no request sent).
      type: bool
    passed:
      description: Same as RV(passed).
      type: bool
    model:
      description: The model requested.
      type: str
    attendees:
      description: Number of simulated attendees.
      type: int
    requests:
      description: Requests sent.
      type: int
    successes:
      description: Requests answered completely with HTTP 200.
      type: int
    errors:
      description: Failed requests.
      type: int
    error_rate:
      description: errors / requests.
      type: float
    errors_by_kind:
      description: Failed requests by kind (C(http_<status>), C(timeout), C(connection), C(stream_incomplete), C(bad_response)).
      type: dict
    error_samples:
      description: Up to five error messages.
      type: list
      elements: str
    ttft_seconds:
      description: Time to first token of successful requests, C(min), C(p50), C(p95), C(p99), C(max), C(mean) (null when none succeeded).
      type: dict
    latency_seconds:
      description: Whole-request latency of successful requests, same keys as RV(capacity_check.ttft_seconds).
      type: dict
    inter_token_seconds:
      description: Mean gap between stream chunks after the first, same keys (streaming only).
      type: dict
    completion_tokens:
      description: Completion tokens reported by the server (usage), summed over successful requests.
      type: int
    wall_seconds:
      description: Duration of the whole check.
      type: float
    thresholds:
      description: The thresholds applied.
      type: dict
    failures:
      description: Which thresholds were missed, as sentences.
      type: list
      elements: str
msg:
  description: One-line verdict.
  returned: always
  type: str
  sample: "PASS: 180 requests by 60 attendees, TTFT p50 0.41 s / p95 1.20 s (limit 3.0 s), errors 0.0% (limit 2.0%)"
changed:
  description: Always false; the check changes nothing.
  returned: always
  type: bool
"""

import http.client as http_client
import json
import socket
import ssl
import threading
import time

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible_collections.rhpds.litemaas.plugins.module_utils.common import compose_argspec, known_model_names
from ansible_collections.rhpds.litemaas.plugins.module_utils.proxy_api import (
    PROXY_API_ARGSPEC,
    HttpSession,
    ProxyApiError,
    ProxyClient,
)

CHAT_PATH = "/v1/chat/completions"


def percentile(values, pct):
    """Linear-interpolated percentile (pct 0..100) of a list of numbers; None for an empty list."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * (pct / 100.0)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values):
    if not values:
        return {"min": None, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {
        "min": round(min(values), 4),
        "p50": round(percentile(values, 50), 4),
        "p95": round(percentile(values, 95), 4),
        "p99": round(percentile(values, 99), 4),
        "max": round(max(values), 4),
        "mean": round(sum(values) / len(values), 4),
    }


def judge(summary, ttft_p95_threshold, ttft_p50_threshold, max_error_rate):
    """Return (passed, failures) for a summary dict with ``requests``, ``error_rate`` and ``ttft_seconds``."""
    failures = []
    if summary["requests"] == 0:
        failures.append("no request was sent")
    if summary["error_rate"] > max_error_rate:
        failures.append("error rate {:.1f}% is above {:.1f}%".format(summary["error_rate"] * 100, max_error_rate * 100))
    p95 = summary["ttft_seconds"]["p95"]
    p50 = summary["ttft_seconds"]["p50"]
    if p95 is None:
        failures.append("no request succeeded, so there is no time to first token")
    else:
        if p95 > ttft_p95_threshold:
            failures.append(f"TTFT p95 {p95:.3f} s is above {ttft_p95_threshold:.3f} s")
        if ttft_p50_threshold is not None and p50 > ttft_p50_threshold:
            failures.append(f"TTFT p50 {p50:.3f} s is above {ttft_p50_threshold:.3f} s")
    return not failures, failures


def chat_session(api_url, validate_certs=True, ca_path=None, timeout=120.0):
    """The proxy client's HTTP session for the data plane: one keep-alive connection per attendee thread. The
    attendees' keys go in each request, so the session carries no Authorization header. A trailing ``/v1`` of
    ``api_url`` is dropped (requests go to ``/v1/chat/completions`` under it)."""
    base = (api_url or "").rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    session = HttpSession(base, validate_certs=validate_certs, ca_path=ca_path, timeout=timeout,
                          headers={"User-Agent": "rhpds.litemaas capacity_check"})
    session.path = session.prefix + CHAT_PATH
    return session


def check_model_served(client, model):
    """Raise ValueError naming the served models when ``model`` is not among them (wildcard routes accept anything)."""
    names = known_model_names(client.list_models())
    if names and model not in names and not any("*" in name for name in names):
        raise ValueError(f"model {model!r} is not served by the proxy; it serves: {', '.join(sorted(names))}")


class Attendee(threading.Thread):
    """One simulated attendee: a keep-alive connection and a few requests in a row."""

    def __init__(self, session, key, body, stream, count, start_delay, results, lock):
        threading.Thread.__init__(self)
        self.stream = stream
        self.daemon = True
        self.session = session
        self.key = key
        self.body = body
        self.count = count
        self.start_delay = start_delay
        self.results = results
        self.lock = lock

    def run(self):
        if self.start_delay > 0:
            time.sleep(self.start_delay)
        for dummy in range(self.count):
            result = self.one_request()
            with self.lock:
                self.results.append(result)
        self.session.close()

    def one_request(self):
        started = time.monotonic()
        try:
            status, resp = self.session.open("POST", CHAT_PATH, body=self.body, headers={
                "Authorization": f"Bearer {self.key}",
                "Content-Type": "application/json",
                "Accept": "text/event-stream" if self.stream else "application/json",
            })
            if status != 200:
                detail = resp.read().decode("utf-8", "replace")
                self.session.finish(resp)
                return {"ok": False, "kind": f"http_{status}", "error": f"HTTP {status}: {detail[:300].strip()}"}
            if (resp.getheader("Content-Type") or "").startswith("text/event-stream"):
                result = self.read_stream(resp, started)
                if result.get("ok"):
                    self.session.finish(resp)
                return result
            raw = resp.read()
            self.session.finish(resp)
            done = time.monotonic()
            try:
                body = json.loads(raw)
                tokens = int((body.get("usage") or {}).get("completion_tokens") or 0)
            except (ValueError, AttributeError, TypeError):
                return {"ok": False, "kind": "bad_response", "error": f"response is not JSON: {raw[:100]!r}"}
            return {"ok": True, "ttft": done - started, "latency": done - started, "itl": None, "tokens": tokens}
        except socket.timeout:
            self.reset()
            return {"ok": False, "kind": "timeout", "error": f"no answer within {self.session.timeout} s"}
        except (http_client.HTTPException, OSError) as exc:
            self.reset()
            return {"ok": False, "kind": "connection", "error": f"{type(exc).__name__}: {exc}"}

    def reset(self):
        self.session.close()

    def read_stream(self, resp, started):
        first = None
        last = None
        gaps = []
        tokens = 0
        finished = False
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                finished = True
                resp.read()  # the rest of the body (chunked terminator), so the connection can be reused
                break
            try:
                chunk = json.loads(payload)
            except ValueError:
                continue
            usage = chunk.get("usage") or {}
            if usage.get("completion_tokens"):
                tokens = int(usage["completion_tokens"])
            if isinstance(chunk.get("error"), dict):
                self.reset()
                return {"ok": False, "kind": "stream_error", "error": str(chunk["error"].get("message"))[:300]}
            text = ""
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                text += (delta.get("content") or delta.get("reasoning_content") or choice.get("text") or "")
            if text:
                now = time.monotonic()
                if first is None:
                    first = now
                else:
                    gaps.append(now - last)
                last = now
        done = time.monotonic()
        if not finished:
            self.reset()
            return {"ok": False, "kind": "stream_incomplete", "error": "the stream ended without [DONE]"}
        if first is None:
            return {"ok": False, "kind": "bad_response", "error": "the stream carried no content"}
        return {"ok": True, "ttft": first - started, "latency": done - started, "itl": (sum(gaps) / len(gaps)) if gaps else None, "tokens": tokens}


def run_check(session, api_keys, model, attendees, requests_per_attendee, ramp_up=0.0, prompt="Hello", max_tokens=64, stream=True):
    """Run the attendees; return the raw per-request results and the wall time."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "stream": bool(stream)}
    if stream:
        body["stream_options"] = {"include_usage": True}
    raw_body = json.dumps(body).encode("utf-8")
    results = []
    lock = threading.Lock()
    threads = []
    step = (float(ramp_up) / attendees) if attendees and ramp_up > 0 else 0.0
    started = time.monotonic()
    for i in range(attendees):
        thread = Attendee(session, api_keys[i % len(api_keys)], raw_body, bool(stream), requests_per_attendee, i * step, results, lock)
        threads.append(thread)
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.monotonic() - started


def build_summary(results, wall, model, attendees):
    ok = [r for r in results if r["ok"]]
    failed = [r for r in results if not r["ok"]]
    kinds = {}
    for r in failed:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    samples = []
    for r in failed:
        if r["error"] not in samples:
            samples.append(r["error"])
        if len(samples) == 5:
            break
    requests = len(results)
    return {
        "skipped": False,
        "model": model,
        "attendees": attendees,
        "requests": requests,
        "successes": len(ok),
        "errors": len(failed),
        "error_rate": round(float(len(failed)) / requests, 4) if requests else 0.0,
        "errors_by_kind": kinds,
        "error_samples": samples,
        "ttft_seconds": summarize([r["ttft"] for r in ok]),
        "latency_seconds": summarize([r["latency"] for r in ok]),
        "inter_token_seconds": summarize([r["itl"] for r in ok if r["itl"] is not None]),
        "completion_tokens": sum(r["tokens"] for r in ok),
        "wall_seconds": round(wall, 3),
    }


def verdict_message(summary, thresholds, passed, failures):
    head = "PASS" if passed else "FAIL"
    ttft = summary["ttft_seconds"]
    timing = "TTFT p50 {} / p95 {} (limit {:.3g} s)".format(
        "n/a" if ttft["p50"] is None else "{:.3f} s".format(ttft["p50"]),
        "n/a" if ttft["p95"] is None else "{:.3f} s".format(ttft["p95"]),
        thresholds["ttft_p95_seconds"],
    )
    text = (f"{head}: {summary['requests']} requests by {summary['attendees']} attendees to {summary['model']}, {timing}, "
            f"errors {summary['error_rate'] * 100:.1f}% (limit {thresholds['max_error_rate'] * 100:.1f}%)")
    if failures:
        text += "; " + "; ".join(failures)
    return text


def main():
    module = AnsibleModule(
        argument_spec=compose_argspec(
            PROXY_API_ARGSPEC,
            api_key=dict(type="str", no_log=True, aliases=["master_key", "litellm_master_key"],
                         fallback=(env_fallback, ["LITEMAAS_MASTER_KEY", "LITELLM_MASTER_KEY"])),
            request_timeout=dict(type="float", default=120.0, fallback=(env_fallback, ["LITEMAAS_REQUEST_TIMEOUT"])),
            api_keys=dict(type="list", elements="str", required=True, no_log=True),
            model=dict(type="str", required=True),
            attendees=dict(type="int", default=10),
            requests_per_attendee=dict(type="int", default=3),
            ramp_up=dict(type="float", default=0.0),
            prompt=dict(type="str", default="Explain in two sentences what a virtual API key is."),
            max_tokens=dict(type="int", default=64, no_log=False),
            stream=dict(type="bool", default=True),
            ttft_p95_threshold=dict(type="float", default=5.0),
            ttft_p50_threshold=dict(type="float"),
            max_error_rate=dict(type="float", default=0.01),
            fail_on_threshold=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not p["api_keys"] or any(not k for k in p["api_keys"]):
        module.fail_json(msg="api_keys must hold at least one non-empty key")
    for name in ("attendees", "requests_per_attendee", "max_tokens"):
        if p[name] < 1:
            module.fail_json(msg=f"{name} must be at least 1, got {p[name]}")
    if not 0 <= p["max_error_rate"] <= 1:
        module.fail_json(msg="max_error_rate must be between 0 and 1, got {}".format(p["max_error_rate"]))
    if p["ramp_up"] < 0 or p["request_timeout"] <= 0:
        module.fail_json(msg="ramp_up must be >= 0 and request_timeout > 0")
    thresholds = {"ttft_p95_seconds": p["ttft_p95_threshold"], "ttft_p50_seconds": p["ttft_p50_threshold"], "max_error_rate": p["max_error_rate"]}
    try:
        session = chat_session(p["api_url"], p["validate_certs"], p["ca_path"], p["request_timeout"])
    except (OSError, ValueError, ssl.SSLError) as exc:
        module.fail_json(msg=str(exc))
    if p["api_key"]:
        try:
            check_model_served(ProxyClient.from_module(module), p["model"])
        except (ProxyApiError, ValueError) as exc:
            module.fail_json(msg=str(exc))

    if module.check_mode:
        summary = {"skipped": True, "passed": False, "model": p["model"], "attendees": p["attendees"],
                   "requests": 0, "thresholds": thresholds, "failures": []}
        module.exit_json(changed=False, passed=False, capacity_check=summary,
                         msg=f"check mode: would send {p['attendees'] * p['requests_per_attendee']} requests by {p['attendees']} attendees "
                             f"to {p['model']} at {session.path}")

    results, wall = run_check(session, p["api_keys"], p["model"], p["attendees"], p["requests_per_attendee"], p["ramp_up"], p["prompt"],
                              p["max_tokens"], p["stream"])
    summary = build_summary(results, wall, p["model"], p["attendees"])
    passed, failures = judge(summary, p["ttft_p95_threshold"], p["ttft_p50_threshold"], p["max_error_rate"])
    summary.update(passed=passed, thresholds=thresholds, failures=failures)
    msg = verdict_message(summary, thresholds, passed, failures)
    if not passed and p["fail_on_threshold"]:
        module.fail_json(msg=msg, passed=False, capacity_check=summary, changed=False)
    module.exit_json(changed=False, passed=passed, capacity_check=summary, msg=msg)


if __name__ == "__main__":
    main()

"""Regex guardrails: refuse requests whose input matches (pre_call), mask matches in responses (post_call).

Configured in the config file (LiteLLM's top-level ``guardrails:`` list) and per key in
``metadata.guardrails`` (names of configured guardrails, or inline definitions)::

    guardrails:
      - guardrail_name: no-card-numbers
        litellm_params:
          guardrail: regex          # the only kind this proxy implements
          mode: pre_call            # pre_call (refuse with 400, or action: mask) | post_call (mask the answer)
          patterns: [credit_card, national_id, "(?i)project\\s+falcon"]   # prebuilt names or regular expressions
          default_on: true          # every request; otherwise only keys that name it
          mask: "[REDACTED]"

A request that no guardrail applies to costs two dict lookups; nothing is compiled or scanned.
"""

from __future__ import annotations

import logging
import re
from typing import Optional

import orjson

from litemaas_proxy import metrics
from litemaas_proxy.auth import MASTER
from litemaas_proxy.errors import ProxyError

log = logging.getLogger("litemaas_proxy.guardrails")
DEFAULT_MASK = "[REDACTED]"
MODES = ("pre_call", "post_call", "during_call")


def _luhn(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _iban(text: str) -> bool:
    s = text.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


def _es_dni(text: str) -> bool:
    s = text.replace("-", "").upper()
    return "TRWAGMYFPDXBNJZSQVHLCKE"[int(s[:8]) % 23] == s[8]


# name -> (regular expression, validator or None)
PREBUILT = {
    "credit_card": (r"\b(?:\d[ -]?){12,18}\d\b", _luhn),
    "us_ssn": (r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b", None),
    "uk_nino": (r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b", None),
    "es_dni": (r"\b\d{8}-?[A-Za-z]\b", _es_dni),
    "iban": (r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", _iban),
    "email": (r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b", None),
    "openai_api_key": (r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}", None),
    "aws_access_key": (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", None),
    "github_token": (r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})\b", None),
    "slack_token": (r"\bxox[abprs]-[A-Za-z0-9-]{10,}", None),
    "google_api_key": (r"\bAIza[0-9A-Za-z_-]{35}\b", None),
    "private_key": (r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----", None),
    "jwt": (r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", None),
}
PATTERN_GROUPS = {
    "national_id": ("us_ssn", "uk_nino", "es_dni"),
    "api_key": ("openai_api_key", "aws_access_key", "github_token", "slack_token", "google_api_key", "private_key", "jwt"),
    "pii": ("credit_card", "us_ssn", "uk_nino", "es_dni", "iban", "email"),
}


class GuardrailConfigError(ValueError):
    pass


class Guardrail:
    """One named set of patterns with a mode (pre_call or post_call) and an action (block or mask)."""

    __slots__ = ("name", "mode", "action", "mask", "default_on", "patterns")

    def __init__(self, name: str, mode: str = "pre_call", patterns=(), mask: str = DEFAULT_MASK, default_on: bool = False,
                 action: Optional[str] = None):
        if not name:
            raise GuardrailConfigError("a guardrail needs a guardrail_name")
        if mode not in MODES:
            raise GuardrailConfigError(f"guardrail {name!r}: mode {mode!r} is not one of {', '.join(MODES)}")
        self.name = name
        self.mode = "post_call" if mode == "post_call" else "pre_call"
        self.action = action or ("mask" if self.mode == "post_call" else "block")
        if self.action not in ("block", "mask") or (self.mode == "post_call" and self.action != "mask"):
            raise GuardrailConfigError(f"guardrail {name!r}: action {self.action!r} is not possible for {self.mode} (block or mask before the call, "
                                       "mask after it)")
        self.mask = str(mask)
        self.default_on = bool(default_on)
        self.patterns = []  # (label, compiled, validator)
        if isinstance(patterns, str):
            patterns = [patterns]
        if not patterns:
            raise GuardrailConfigError(f"guardrail {name!r}: no patterns")
        for item in patterns:
            for label in PATTERN_GROUPS.get(item, (item,)):
                regex, validator = PREBUILT.get(label, (label, None))
                try:
                    compiled = re.compile(regex)
                except re.error as exc:
                    raise GuardrailConfigError(f"guardrail {name!r}: invalid regular expression {label!r}: {exc}") from None
                self.patterns.append((label if label in PREBUILT else "custom pattern", compiled, validator))

    @classmethod
    def from_config(cls, item: dict) -> Guardrail:
        if not isinstance(item, dict):
            raise GuardrailConfigError(f"a guardrail must be a mapping, got {item!r}")
        params = dict(item.get("litellm_params") or {})
        for k, v in item.items():
            if k not in ("litellm_params", "guardrail_info"):
                params.setdefault(k, v)
        kind = params.get("guardrail", "regex")
        if kind not in ("regex", "litemaas_regex", "content_filter"):
            raise GuardrailConfigError(f"guardrail {item.get('guardrail_name')!r}: kind {kind!r} is not supported (use 'regex')")
        mode = params.get("mode", "pre_call")
        if isinstance(mode, list):
            mode = mode[0] if len(mode) == 1 else mode
        if isinstance(mode, list):
            raise GuardrailConfigError(f"guardrail {item.get('guardrail_name')!r}: one mode per guardrail (define two guardrails for both)")
        patterns = params.get("patterns") or params.get("pattern") or []
        return cls(str(params.get("guardrail_name") or params.get("name") or ""), str(mode), patterns, params.get("mask", DEFAULT_MASK),
                   params.get("default_on", False), params.get("action"))

    def find(self, text: str) -> Optional[str]:
        for label, compiled, validator in self.patterns:
            for m in compiled.finditer(text):
                if validator is None or validator(m.group(0)):
                    return label
        return None

    def redact(self, text: str) -> str:
        for _label, compiled, validator in self.patterns:
            if validator is None:
                text = compiled.sub(self.mask, text)
            else:
                text = compiled.sub(lambda m, v=validator: self.mask if v(m.group(0)) else m.group(0), text)
        return text


def _texts(body: dict):
    """(container, key) pairs of the request strings a guardrail looks at: message contents, prompt, input."""
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in messages:
            if not isinstance(m, dict):
                continue
            c = m.get("content")
            if isinstance(c, str):
                yield m, "content"
            elif isinstance(c, list):
                for part in c:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        yield part, "text"
    for name in ("prompt", "input"):
        v = body.get(name)
        if isinstance(v, str):
            yield body, name
        elif isinstance(v, list):
            for i, item in enumerate(v):
                if isinstance(item, str):
                    yield v, i


HOLD_BACK = 128  # characters of streamed text held back so that a match split across stream events is still masked


class Active:
    """The guardrails that apply to one request (with the hold-back state of its stream)."""

    __slots__ = ("pre", "post", "_pending", "_template")

    def __init__(self, pre: list, post: list):
        self.pre = pre
        self.post = post
        self._pending: dict = {}  # choice index -> streamed text not sent yet
        self._template = None  # id, object, created, model of the stream, for a flush event

    def fresh(self) -> Active:
        """A copy for one request: the stream hold-back state must not be shared."""
        return Active(self.pre, self.post) if self.post else self

    def pre_call(self, body: dict, model: str, entry=None, route: str = "") -> None:
        for g in self.pre:
            for container, key in _texts(body):
                text = container[key]
                label = g.find(text)
                if label is None:
                    continue
                if g.action == "mask":
                    container[key] = g.redact(text)
                    continue
                metrics.guardrail(g.name, g.mode, "blocked")
                metrics.failure(entry, model, route, 400)
                raise ProxyError(400, f"Violated guardrail policy: guardrail '{g.name}' blocked this request ({label} found in the input). "
                                 "Remove that content and retry.", "guardrail_violation", "None")
            metrics.guardrail(g.name, g.mode, "passed")

    def _redact(self, text: str) -> str:
        for g in self.post:
            new = g.redact(text)
            if new != text:
                metrics.guardrail(g.name, g.mode, "masked")
                text = new
        return text

    def mask_json(self, data, content: bytes) -> bytes:
        """Mask matches in a chat/completion response; returns the body to send."""
        changed = False
        for choice in (data.get("choices") or []) if isinstance(data, dict) else []:
            if not isinstance(choice, dict):
                continue
            for container, key in ((choice.get("message"), "content"), (choice, "text")):
                if isinstance(container, dict) and isinstance(container.get(key), str):
                    text = container[key]
                    new = self._redact(text)
                    if new != text:
                        container[key] = new
                        changed = True
        return orjson.dumps(data) if changed else content

    def mask_events(self, events: list) -> list:
        """Mask matches in streamed text. The last HOLD_BACK characters of each choice are held back and sent with the
        next event (at the latest with the one that carries finish_reason), so a match split across events is masked too."""
        out = []
        for event in events:
            if not event.startswith(b"data: {") or b'"choices"' not in event:
                if event.startswith(b"data: [DONE]") and any(self._pending.values()):
                    out.append(self._flush_event())  # no finish_reason came: send what is held back before the end
                out.append(event)
                continue
            try:
                data = orjson.loads(event[6:])
            except orjson.JSONDecodeError:
                out.append(event)
                continue
            if self._template is None and isinstance(data, dict):
                self._template = {k: data.get(k) for k in ("id", "object", "created", "model")}
            changed = False
            for choice in data.get("choices") or () if isinstance(data, dict) else ():
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta")
                container, key = (delta, "content") if isinstance(delta, dict) else (choice, "text")
                text = container.get(key)
                text = text if isinstance(text, str) else None
                idx = choice.get("index", 0)
                pending = self._pending.get(idx, "")
                finished = choice.get("finish_reason") is not None
                if text is None and not (finished and pending):
                    continue
                masked = self._redact(pending + (text or ""))
                cut = len(masked) if finished else max(0, len(masked) - HOLD_BACK)
                self._pending[idx] = masked[cut:]
                if masked[:cut] != text:
                    container[key] = masked[:cut]
                    changed = True
            out.append(b"data: " + orjson.dumps(data) + b"\n\n" if changed else event)
        return out

    def _flush_event(self) -> bytes:
        template = self._template or {}
        chat = template.get("object") != "text_completion"
        choices = [{"index": idx, "delta": {"content": text}, "finish_reason": None} if chat else {"index": idx, "text": text, "finish_reason": None}
                   for idx, text in self._pending.items() if text]
        self._pending.clear()
        return b"data: " + orjson.dumps({**template, "choices": choices}) + b"\n\n"


class Guardrails:
    """All guardrails of the process: the configured ones by name, those on by default, and per-key selections."""

    def __init__(self, items: list):
        self.by_name: dict = {}
        for item in items or []:
            g = Guardrail.from_config(item)
            if g.name in self.by_name:
                raise GuardrailConfigError(f"guardrail {g.name!r} is defined twice")
            self.by_name[g.name] = g
        on = [g for g in self.by_name.values() if g.default_on]
        self.default = Active([g for g in on if g.mode == "pre_call"], [g for g in on if g.mode == "post_call"]) if on else None
        self._per_key: dict = {}  # token -> (metadata guardrails value, Active or None)
        # Whether any request can have a post_call guardrail: when not, responses are not even looked up for one.
        self.post_possible = any(g.mode == "post_call" for g in self.by_name.values())

    def for_request(self, entry) -> Optional[Active]:
        """The guardrails for this caller, or None when none apply (the common case: no work at all)."""
        if entry is MASTER:
            return self.default.fresh() if self.default else None
        meta = entry.key.get("metadata")
        if not meta or "guardrails" not in meta:
            return self.default.fresh() if self.default else None
        wanted = meta["guardrails"] if isinstance(meta, dict) else None
        if not wanted:
            return self.default.fresh() if self.default else None
        cached = self._per_key.get(entry.token)
        if cached is not None and cached[0] is wanted:
            return cached[1].fresh() if cached[1] else None
        active = self._resolve(wanted)
        if len(self._per_key) > 10000:
            self._per_key.clear()
        self._per_key[entry.token] = (wanted, active)
        return active.fresh() if active else None

    def _resolve(self, wanted) -> Optional[Active]:
        chosen = list(self.default.pre + self.default.post) if self.default else []
        for item in wanted if isinstance(wanted, list) else [wanted]:
            if isinstance(item, str):
                g = self.by_name.get(item)
                if g is None:
                    raise ProxyError(400, f"Guardrail '{item}' named in this key's metadata.guardrails is not configured on the proxy. "
                                     f"Configured guardrails: {sorted(self.by_name)}", "guardrail_error", "None")
            else:
                try:
                    g = Guardrail.from_config(item)
                except GuardrailConfigError as exc:
                    raise ProxyError(400, f"Invalid guardrail in this key's metadata.guardrails: {exc}", "guardrail_error", "None")
            if g not in chosen:
                chosen.append(g)
        if not chosen:
            return None
        if any(g.mode == "post_call" for g in chosen):
            self.post_possible = True  # an inline post_call guardrail on a key
        return Active([g for g in chosen if g.mode == "pre_call"], [g for g in chosen if g.mode == "post_call"])


def setup(app, proxy) -> None:
    proxy.guardrails = Guardrails(proxy.settings.guardrails or [])
    if proxy.guardrails.by_name:
        log.info("guardrails: %s", ", ".join(f"{g.name} ({g.mode}{', default on' if g.default_on else ''})" for g in proxy.guardrails.by_name.values()))

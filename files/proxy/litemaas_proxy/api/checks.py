"""What a data-plane request must pass before it reaches a model server: the key's state (blocked, expired,
over budget, with its user and team), access to the model, and a body a model server can answer.

Each check raises ProxyError with LiteLLM's error shape and status code; the data plane, the pass-through
routes and the model listings (``/v1/models``, ``/model/info``) share them.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime, timezone

from litemaas_proxy.auth import MASTER
from litemaas_proxy.errors import ProxyError
from litemaas_proxy.values import epoch

UTC = timezone.utc
SPECIAL_ALL = ("*", "all-proxy-models", "all-team-models")


def model_allowed(allowed: list, model: str, router) -> bool:
    if not allowed or model in allowed:
        return True
    for item in allowed:
        if item in SPECIAL_ALL:
            return True
        if "*" in item and fnmatch.fnmatchcase(model, item):
            return True
    deps = router.groups.get(model) or ()
    return any(g in allowed for d in deps for g in d.access_groups)


def may_use_model(entry, model: str, router) -> bool:
    """Whether a request by this key for ``model`` passes check_model_access (the listings show exactly those)."""
    try:
        check_model_access(entry, model, router)
    except ProxyError:
        return False
    return True


def check_model_access(entry, model: str, router) -> None:
    if entry is MASTER:
        return
    key = entry.key
    if not model_allowed(key.get("models") or [], model, router):
        raise ProxyError(401, f"key not allowed to access model. This key can only access models={key.get('models')}. Tried to access {model}",
                         "key_model_access_denied", "model")
    team = entry.team
    if team and not model_allowed(team.get("models") or [], model, router):
        raise ProxyError(401, f"Team not allowed to access model. Team={team['team_id']}, Model={model}. Allowed team models = {team.get('models')}",
                         "team_model_access_denied", "model")
    user = entry.user
    if user and not team:
        umodels = [m for m in (user.get("models") or []) if m != "no-default-models"]
        if umodels and not model_allowed(umodels, model, router):
            raise ProxyError(401, f"User not allowed to access model. User={user['user_id']}, Model={model}. Allowed user models = {umodels}",
                             "user_model_access_denied", "model")


def _spend_of(proxy, row: dict, kind: str, ident, mark: float, now: float) -> float:
    reset = row.get("budget_reset_at")
    if reset is not None:
        if epoch(reset) <= now:
            return max(0.0, proxy.spend.pending(kind, ident, mark))
    return float(row.get("spend") or 0.0) + proxy.spend.pending(kind, ident, mark)


def check_key_state(proxy, entry, now: float) -> None:
    """Blocked, expired and over-budget keys (and their teams/users) are refused before any upstream call."""
    if entry is MASTER:
        return
    key = entry.key
    if key.get("blocked"):
        raise ProxyError(401, "Authentication Error, Key is blocked. Update via `/key/unblock` if you're admin.", "auth_error", "None")
    team = entry.team
    if team and team.get("blocked"):
        raise ProxyError(401, f"Authentication Error, Team={team['team_id']} is blocked. Update via `/team/unblock` if your admin.", "auth_error", "None")
    if entry.expires_ts is not None and entry.expires_ts < now:
        exp = datetime.fromtimestamp(entry.expires_ts, UTC).isoformat()
        raise ProxyError(400, f"Authentication Error - Expired Key. Key Expiry time {exp} and current time {datetime.now(UTC).isoformat()}",
                         "expired_key", key.get("key_name") or "None")
    marks = entry.spend_marks or {}
    max_budget = key.get("max_budget")
    if max_budget is not None:
        spent = _spend_of(proxy, key, "k", entry.token, marks.get("k", 0.0), now)
        if spent >= max_budget:
            raise ProxyError(400, f"Budget has been exceeded! Current cost: {spent}, Max budget: {max_budget}", "budget_exceeded", None)
    if team and team.get("max_budget") is not None:
        spent = _spend_of(proxy, team, "t", team["team_id"], marks.get("t", 0.0), now)
        if spent > team["max_budget"]:
            raise ProxyError(400, f"Budget has been exceeded! Team={team['team_id']} Current cost: {spent}, Max budget: {team['max_budget']}",
                             "budget_exceeded", None)
    user = entry.user
    if user and user.get("max_budget") is not None:
        spent = _spend_of(proxy, user, "u", user["user_id"], marks.get("u", 0.0), now)
        if spent > user["max_budget"]:
            raise ProxyError(400, f"ExceededBudget: User={user['user_id']} over budget. Spend={spent}, Budget={user['max_budget']}",
                             "budget_exceeded", None)


def invalid_field(name: str, expected: str, value) -> ProxyError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ProxyError(400, f"Invalid request: '{name}' must be {expected}. Received: {shown}", "invalid_request_error", name)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text_or_tokens(value) -> bool:
    """A string, a non-empty list of strings, of token ids, or of lists of token ids (OpenAI's prompt/input)."""
    if isinstance(value, str):
        return True
    if not isinstance(value, list) or not value:
        return False
    return (all(isinstance(v, str) for v in value) or all(_is_int(v) for v in value)
            or all(isinstance(v, list) and v and all(_is_int(t) for t in v) for v in value))


# Optional request fields checked before anything reaches a model server: name -> (test, expected).
_OPTIONAL_FIELDS = {
    "stream": (lambda v: isinstance(v, bool), "true or false"),
    "max_tokens": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "max_completion_tokens": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "n": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "seed": (_is_int, "an integer"),
    # Ranges are the model server's to check (they differ between servers); the types are not.
    "temperature": (_is_number, "a number"),
    "top_p": (_is_number, "a number"),
    "presence_penalty": (_is_number, "a number"),
    "frequency_penalty": (_is_number, "a number"),
    "stream_options": (lambda v: isinstance(v, dict), "an object"),
    "stop": (lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)), "a string or a list of strings"),
    "user": (lambda v: isinstance(v, str), "a string"),
    "metadata": (lambda v: isinstance(v, dict), "an object"),
    "tools": (lambda v: isinstance(v, list) and all(isinstance(t, dict) for t in v), "a list of objects"),
    "tool_choice": (lambda v: isinstance(v, (str, dict)), "a string or an object"),
    "response_format": (lambda v: isinstance(v, dict), "an object"),
    "dimensions": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "encoding_format": (lambda v: v in ("float", "base64"), "'float' or 'base64'"),
}


def validate_llm_body(body: dict, call_type: str) -> None:
    """Refuse, with a 400 naming the field, a request no model server could answer (wrong types, missing fields)."""
    if call_type == "acompletion":
        messages = body.get("messages")
        if messages is None:
            raise ProxyError(400, "Invalid request: 'messages' is required", "invalid_request_error", "messages")
        if not isinstance(messages, list) or not messages:
            raise invalid_field("messages", "a non-empty list of message objects", messages)
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise invalid_field(f"messages[{i}]", "an object with 'role' and 'content'", message)
            if not isinstance(message.get("role"), str) or not message["role"]:
                raise invalid_field(f"messages[{i}].role", "a string such as 'user'", message.get("role"))
            content = message.get("content")
            if content is not None and not isinstance(content, (str, list)):
                raise invalid_field(f"messages[{i}].content", "a string or a list of content parts", content)
    elif call_type == "atext_completion":
        if body.get("prompt") is None:
            raise ProxyError(400, "Invalid request: 'prompt' is required", "invalid_request_error", "prompt")
        if not _text_or_tokens(body["prompt"]):
            raise invalid_field("prompt", "a string, a non-empty list of strings or a list of token ids", body["prompt"])
    elif call_type == "aembedding":
        if body.get("input") is None:
            raise ProxyError(400, "Invalid request: 'input' is required", "invalid_request_error", "input")
        if not _text_or_tokens(body["input"]):
            raise invalid_field("input", "a string, a non-empty list of strings or a list of token ids", body["input"])
    for name, (test, expected) in _OPTIONAL_FIELDS.items():
        value = body.get(name)
        if value is not None and not test(value):
            raise invalid_field(name, expected, value)

# Apache-2.0 (see LICENSE)
"""Ask questions with known answers and say, per answer, whether it holds the expected fact. Standard library only.

    ask.py check --config DATA/check.json [--json-out FILE]
        Each workshop user's key asks its question through the proxy (user n gets question n of the set, cycling).
        Prints one line per user: user, key alias, masked key, OK / WRONG / EMPTY / FAILED, the question and the
        answer. Exit status 0 when at least one answer is right, 1 when none is, 2 when the config cannot be used.
        The config is written by the rhpds.litemaas.litemaas_local role; ``bash scripts/local.sh check`` runs this.

    ask.py measure --base-url URL [--model NAME] [--api-key KEY] [--questions FILE] [--repeat N] [--temperature T]
        Every question of the set against any OpenAI-compatible server; prints each answer and the accuracy.

An answer is right when it contains one of the question's ``expect`` strings as a whole word, ignoring case
(``4`` matches ``2+2=4.`` but not ``42``). Requests use temperature 0 (``measure --temperature`` changes it), so the
same model gives the same answers.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

QUESTIONS = Path(__file__).resolve().parent / "questions.json"


class ConfigError(ValueError):
    pass


def load_questions(path) -> list:
    try:
        items = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the questions from {path}: {exc}") from exc
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}: expected a non-empty list of {{'question': ..., 'expect': [...]}}")
    for n, item in enumerate(items):
        if not (isinstance(item, dict) and isinstance(item.get("question"), str) and item["question"].strip()
                and isinstance(item.get("expect"), list) and item["expect"] and all(isinstance(e, str) and e for e in item["expect"])):
            raise ConfigError(f"{path}: item {n} needs a non-empty 'question' string and a non-empty 'expect' list of strings")
    return items


def verdict(answer: str, expect) -> str:
    """OK when ``answer`` holds one of ``expect`` as a whole word (any case), EMPTY when blank, else WRONG."""
    if not answer or not answer.strip():
        return "EMPTY"
    for fact in expect:
        if re.search(r"(?<!\w)" + re.escape(fact) + r"(?!\w)", answer, re.IGNORECASE):
            return "OK"
    return "WRONG"


def one_line(text: str, width: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def mask(key: str) -> str:
    return f"{key[:5]}...{key[-4:]}" if isinstance(key, str) and len(key) > 12 else "(unknown)"


def chat(base_url: str, model: str, question: str, key: str | None, max_tokens: int, timeout: float, temperature: float = 0.0) -> dict:
    """One chat request. Returns {status, answer, error, seconds}; never raises for HTTP or network errors."""
    body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens, "temperature": temperature}
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(base_url.rstrip("/") + "/chat/completions", data=json.dumps(body).encode(), headers=headers, method="POST")
    start = time.monotonic()
    out = {"status": 0, "answer": "", "error": "", "seconds": 0.0}
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            out["status"] = resp.status
            data = json.load(resp)
        out["answer"] = ((data.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
    except urllib.error.HTTPError as exc:
        out["status"] = exc.code
        raw = exc.read().decode("utf-8", "replace")
        try:
            err = json.loads(raw).get("error")
            out["error"] = err.get("message") if isinstance(err, dict) else str(err or raw)
        except (ValueError, AttributeError):
            out["error"] = raw
    except (urllib.error.URLError, OSError, ValueError) as exc:
        out["error"] = str(getattr(exc, "reason", exc))
    out["seconds"] = round(time.monotonic() - start, 2)
    return out


def result_text(res: dict) -> str:
    if res["status"] != 200:
        return f"FAILED (HTTP {res['status'] or '-'}): {one_line(res['error'] or 'no answer', 60)}"
    shown = json.dumps(one_line(res["answer"], 60), ensure_ascii=False)
    extra = "" if res["verdict"] == "OK" else f"  (expected {' or '.join(res['expect'])})"
    return f"{res['verdict']:<5} {res['seconds']:5.2f}s  {res['question']} -> {shown}{extra}"


# ------------------------------------------------------------------ check: each workshop key through the proxy


def load_config(path) -> dict:
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc} (run `bash scripts/local.sh` first)") from exc
    for field in ("proxy_url", "model", "key_store", "users", "questions"):
        if field not in cfg:
            raise ConfigError(f"{path}: field {field!r} is missing")
    return cfg


def run_check(cfg: dict) -> list:
    questions = cfg["questions"]
    try:
        store = json.loads(Path(cfg["key_store"]).read_text()).get("keys") or {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the workshop's key store {cfg['key_store']}: {exc}") from exc
    rows = []
    for n, user in enumerate(cfg["users"]):
        item = questions[n % len(questions)]
        key = (store.get(user["alias"]) or {}).get("key")
        if not key:
            res = {"status": 0, "answer": "", "error": f"no key for {user['alias']} in {cfg['key_store']}", "seconds": 0.0}
        else:
            res = chat(cfg["proxy_url"] + "/v1", cfg["model"], item["question"], key, int(cfg.get("max_tokens", 40)),
                       float(cfg.get("timeout", 180)))
        res.update(user=user["user_id"], alias=user["alias"], key=mask(key), question=item["question"], expect=item["expect"],
                   verdict=verdict(res["answer"], item["expect"]) if res["status"] == 200 else "FAILED")
        rows.append(res)
    return rows


def check_table(rows: list) -> str:
    lines = [f"{'user':<28} {'key alias':<24} {'key':<14} answer through the proxy, with this key",
             f"{'-' * 28} {'-' * 24} {'-' * 14} {'-' * 40}"]
    for r in rows:
        lines.append(f"{r['user']:<28} {r['alias']:<24} {r['key']:<14} {result_text(r)}")
    right = sum(r["verdict"] == "OK" for r in rows)
    lines.append(f"{right} of {len(rows)} answers right.")
    return "\n".join(lines)


# ------------------------------------------------------------------ measure: the whole set against one server


def run_measure(args) -> int:
    questions = load_questions(args.questions)
    model = args.model
    if not model:
        req = urllib.request.Request(args.base_url.rstrip("/") + "/models",
                                     headers={"Authorization": f"Bearer {args.api_key}"} if args.api_key else {})
        with urllib.request.urlopen(req, timeout=30) as resp:
            model = json.load(resp)["data"][0]["id"]
    right = total = 0
    seconds = []
    for _round in range(args.repeat):
        for item in questions:
            res = chat(args.base_url, model, item["question"], args.api_key, args.max_tokens, args.timeout, args.temperature)
            res.update(question=item["question"], expect=item["expect"],
                       verdict=verdict(res["answer"], item["expect"]) if res["status"] == 200 else "FAILED")
            right += res["verdict"] == "OK"
            total += 1
            seconds.append(res["seconds"])
            print(result_text(res), flush=True)
    seconds.sort()
    print(f"{model} at {args.base_url}, temperature {args.temperature:g}: {right} of {total} right ({100.0 * right / total:.0f}%), "
          f"median {seconds[len(seconds) // 2]:.2f}s, slowest {seconds[-1]:.2f}s per request")
    return 0 if right else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Ask questions with known answers and check the answers")
    sub = ap.add_subparsers(dest="command", required=True)
    chk = sub.add_parser("check", help="each workshop key asks its question through the proxy")
    chk.add_argument("--config", required=True, help="check.json written by the litemaas_local role")
    chk.add_argument("--json-out", help="also write the results (no keys) to this file")
    mea = sub.add_parser("measure", help="every question against one OpenAI-compatible server")
    mea.add_argument("--base-url", required=True, help="OpenAI base URL, e.g. http://127.0.0.1:18080/v1")
    mea.add_argument("--model", help="model id (default: the first /models lists)")
    mea.add_argument("--api-key")
    mea.add_argument("--questions", default=str(QUESTIONS))
    mea.add_argument("--repeat", type=int, default=1)
    mea.add_argument("--max-tokens", type=int, default=40)
    mea.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0: the same answers each time)")
    mea.add_argument("--timeout", type=float, default=180)
    args = ap.parse_args(argv)
    try:
        if args.command == "measure":
            return run_measure(args)
        rows = run_check(load_config(args.config))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(check_table(rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if any(r["verdict"] == "OK" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

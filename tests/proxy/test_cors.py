"""Browsers (CORS): a page on another origin calls the proxy, as the portal's Chat Playground does.

HTTP level: preflights on every route of the route table (no key, no limits, no spend), CORS headers on every kind of
answer (errors, streams, pass-through), the allow-list setting. Browser level: Debian's Chromium driven by Playwright
opens a page served from another loopback origin; the page streams a chat answer from the real proxy into the DOM,
and shows the proxy's own error message for a wrong key; the test reads the DOM.
"""

from __future__ import annotations

import http.server
import sys
import threading
from pathlib import Path

import pytest
import requests

from tests.proxy.conftest import db_value, new_key, uid, wait_for
from tests.proxy.test_routes import build_app, concrete
from tests.support.services import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "files" / "proxy"))

from litemaas_proxy.api import routes  # noqa: E402
from litemaas_proxy.auth import hash_token  # noqa: E402
from litemaas_proxy.config import load_settings  # noqa: E402

PAGE_ORIGIN = "http://page.example:8080"
PREFLIGHT = {"Origin": PAGE_ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def preflight(url: str, headers=None) -> requests.Response:
    return requests.options(url, headers={**PREFLIGHT, **(headers or {})}, timeout=30)


def assert_preflight_allowed(resp: requests.Response, origin: str = "*", where: str = "") -> None:
    assert resp.status_code == 204, f"{where}: {resp.status_code} {resp.text[:300]}"
    assert resp.content == b"", where
    h = resp.headers
    assert h["Access-Control-Allow-Origin"] == origin, where
    assert h["Access-Control-Allow-Methods"] == "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT", where
    assert h["Access-Control-Allow-Headers"] == "authorization,content-type", where
    assert h["Access-Control-Max-Age"] == "600", where
    assert "Access-Control-Allow-Credentials" not in h, where


# ---------------------------------------------------------------------------- HTTP level


def test_preflight_is_answered_on_every_route_without_a_key(proxy):
    table = routes.table(build_app())
    assert len(table) >= 50
    paths = {concrete(r.path, "sk-" + "x" * 22) for r in table} | {"/no/such/route"}
    for path in sorted(paths):
        assert_preflight_allowed(preflight(proxy.url + path), where=path)


def test_every_answer_to_a_browser_carries_the_cors_headers(proxy, db_model):
    key = new_key(proxy, key_alias=uid("cors"), models=["stub-model"], rpm_limit=1000)
    failing = db_model("stub-fail-503")  # the stub answers 503 for this model name
    any_model_key = new_key(proxy, key_alias=uid("cors-any"))
    origin = {"Origin": PAGE_ORIGIN}
    body = {"model": "stub-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}
    # A streamed answer: the headers come before the first chunk, and a page may read the x-litellm-* and rate-limit ones.
    with requests.post(proxy.url + "/v1/chat/completions", json={**body, "stream": True}, stream=True, timeout=30,
                       headers={"Authorization": f"Bearer {key}", **origin}) as resp:
        assert resp.status_code == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        exposed = resp.headers["Access-Control-Expose-Headers"].split(", ")
        assert {"x-litellm-model-group", "x-litellm-model-id", "x-litellm-key-rpm-limit", "x-ratelimit-api_key-remaining-requests",
                "x-ratelimit-api_key-limit-requests"} <= set(exposed), exposed
        assert "content-type" not in exposed and "Vary" not in resp.headers
        text = b"".join(resp.iter_content(None)).decode()
    assert text.rstrip().endswith("data: [DONE]") and '"content":"tok0"' in text.replace(" ", ""), text
    # Errors: the page gets the proxy's own message.
    cases = {
        "wrong key": ("POST", "/v1/chat/completions", body, {"Authorization": "Bearer sk-wrong-key-0000"}, 401,
                      "Authentication Error, Invalid proxy server token passed. Received API Key = sk-...0000, Key Hash (Token) ="
                      + hash_token("sk-wrong-key-0000") + ". Unable to find token in cache or `LiteLLM_VerificationTokenTable`"),
        "no key": ("GET", "/v1/models", None, {}, 401, "Authentication Error, No api key passed in."),
        "model not allowed": ("POST", "/v1/chat/completions", {**body, "model": "granite-3-8b"}, {"Authorization": f"Bearer {key}"}, 401,
                              None),
        "upstream failure": ("POST", "/v1/chat/completions", {**body, "model": failing}, {"Authorization": f"Bearer {any_model_key}"}, 503,
                             None),
        "unknown route": ("GET", "/v1/nothing-here", None, {"Authorization": f"Bearer {key}"}, 404, "Route not found: GET /v1/nothing-here"),
        "wrong method": ("DELETE", "/v1/models", None, {"Authorization": f"Bearer {key}"}, 405, None),
        "not an admin": ("POST", "/key/generate", {}, {"Authorization": f"Bearer {key}"}, 401, None),
    }
    for label, (method, path, payload, headers, status, message) in cases.items():
        resp = requests.request(method, proxy.url + path, json=payload, headers={**headers, **origin}, timeout=30)
        assert resp.status_code == status, f"{label}: {resp.status_code} {resp.text}"
        assert resp.headers["Access-Control-Allow-Origin"] == "*", label
        err = resp.json()["error"]
        assert err["code"] == str(status) and err["message"], label
        if message:
            assert err["message"] == message, label
    # Without Origin (curl, SDKs) nothing changes.
    resp = requests.get(proxy.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert resp.status_code == 200 and not any(h.lower().startswith("access-control-") for h in resp.headers), resp.headers


def test_rate_limit_answer_carries_cors_and_preflights_count_nothing(proxy):
    key = new_key(proxy, key_alias=uid("cors-rpm"), models=["stub-model"], rpm_limit=1, max_parallel_requests=1)
    token = hash_token(key)
    for dummy in range(5):  # preflights carry no key; they must not use the key's one request or its parallel slot
        assert_preflight_allowed(preflight(proxy.url + "/v1/chat/completions"))
    body = {"model": "stub-model", "messages": [{"role": "user", "content": "one two"}], "max_tokens": 2}
    headers = {"Authorization": f"Bearer {key}", "Origin": PAGE_ORIGIN}
    first = requests.post(proxy.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert first.status_code == 200, first.text
    assert first.headers["Access-Control-Allow-Origin"] == "*"
    assert first.json()["choices"][0]["message"]["content"] == "tok0 tok1"
    second = requests.post(proxy.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert second.status_code == 429, second.text
    assert second.headers["Access-Control-Allow-Origin"] == "*"
    assert {"retry-after", "rate_limit_type"} <= set(second.headers["Access-Control-Expose-Headers"].split(", "))
    assert second.json()["error"]["message"].startswith(f"Rate limit exceeded for api_key: {token}. Limit type: requests.")
    for dummy in range(3):
        assert_preflight_allowed(preflight(proxy.url + "/v1/chat/completions"))
    # Exactly one request was charged: the one answered.
    wait_for(lambda: db_value(proxy.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', token) == 1, message="spend row")
    wait_for(lambda: db_value(proxy.dsn, 'SELECT spend FROM "LiteLLM_VerificationToken" WHERE token = %s', token) == pytest.approx(6e-6),
             message="the key's spend: 2 prompt and 2 completion tokens")


@pytest.fixture(scope="module")
def page_server():
    """Serves ``PAGE`` from another loopback origin than the proxy's (another port)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    servers = []

    def start():
        server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def restricted(proxy_factory, page_server):
    """A proxy that allows one page origin (and another one that serves nothing)."""
    allowed = page_server()
    other = page_server()
    p = proxy_factory(database="cors_restricted", env={"LITEMAAS_CORS_ALLOW_ORIGINS": f"{allowed}/, https://Chat.Example.com"})
    return p, allowed, other


def test_allow_list_echoes_allowed_origins_only(restricted):
    p, allowed, other = restricted
    resp = preflight(p.url + "/v1/chat/completions", {"Origin": allowed})
    assert_preflight_allowed(resp, origin=allowed)
    assert resp.headers["Vary"] == "Origin"
    assert_preflight_allowed(preflight(p.url + "/v1/models", {"Origin": "https://chat.example.com"}), origin="https://chat.example.com")
    resp = preflight(p.url + "/v1/chat/completions", {"Origin": other})
    assert resp.status_code == 403 and "Access-Control-Allow-Origin" not in resp.headers
    assert resp.json() == {"error": {"message": f"CORS: origin '{other}' is not allowed. Allowed origins: {allowed}, https://chat.example.com "
                                                "(cors_allow_origins, LITEMAAS_CORS_ALLOW_ORIGINS).", "type": "auth_error", "param": "Origin",
                                     "code": "403"}}
    key = new_key(p, models=["stub-model"])
    resp = requests.get(p.url + "/v1/models", headers={"Authorization": f"Bearer {key}", "Origin": allowed}, timeout=30)
    assert resp.status_code == 200 and resp.headers["Access-Control-Allow-Origin"] == allowed and resp.headers["Vary"] == "Origin"
    # Another origin is answered (CORS is the browser's to enforce) but without the headers that let a page read it.
    resp = requests.get(p.url + "/v1/models", headers={"Authorization": f"Bearer {key}", "Origin": other}, timeout=30)
    assert resp.status_code == 200 and [m["id"] for m in resp.json()["data"]] == ["stub-model"]
    assert not any(h.lower().startswith("access-control-") for h in resp.headers)


@pytest.mark.parametrize("value,message", [
    ("https://portal.example.com/path", "Invalid LITEMAAS_CORS_ALLOW_ORIGINS / general_settings.cors_allow_origins entry "
                                        "'https://portal.example.com/path': expected '*' or an origin such as https://portal.example.com "
                                        "(scheme and host, optionally a port; no path)"),
    ("portal.example.com", "Invalid LITEMAAS_CORS_ALLOW_ORIGINS / general_settings.cors_allow_origins entry 'portal.example.com': "
                           "expected '*' or an origin such as https://portal.example.com (scheme and host, optionally a port; no path)"),
    (" , ", "Invalid LITEMAAS_CORS_ALLOW_ORIGINS / general_settings.cors_allow_origins ' , ': expected '*' or at least one origin"),
])
def test_a_bad_origin_setting_stops_the_start_naming_it(value, message):
    with pytest.raises(ValueError) as err:
        load_settings(None, env={"LITEMAAS_CORS_ALLOW_ORIGINS": value})
    assert str(err.value) == message


def test_origin_setting_forms(tmp_path):
    assert load_settings(None, env={}).cors_allow_origins == ("*",)
    env = {"LITEMAAS_CORS_ALLOW_ORIGINS": "https://A.example.com/ http://b.example:8080,https://a.example.com"}
    assert load_settings(None, env=env).cors_allow_origins == ("https://a.example.com", "http://b.example:8080")
    path = tmp_path / "config.yaml"
    path.write_text("general_settings:\n  cors_allow_origins: [https://portal.example.com, '*']\n")
    assert load_settings(str(path), env={}).cors_allow_origins == ("https://portal.example.com", "*")
    path.write_text("general_settings:\n  cors_allow_origins: [https://portal.example.com, 7]\n")
    with pytest.raises(ValueError, match=r"entry 7: expected a string"):
        load_settings(str(path), env={})


# ---------------------------------------------------------------------------- a real browser

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>chat</title></head>
<body>
<p>status: <span id="status">running</span></p>
<p>http: <span id="http"></span> model group: <span id="group"></span> rpm limit: <span id="rpm"></span></p>
<pre id="answer"></pre>
<p id="error"></p>
<script>
async function run() {
  const q = new URLSearchParams(location.search);
  const show = (id, text) => { document.getElementById(id).textContent = text; };
  try {
    const res = await fetch(q.get("proxy") + "/v1/chat/completions", {
      method: "POST",
      headers: {"Authorization": "Bearer " + q.get("key"), "Content-Type": "application/json"},
      body: JSON.stringify({model: "stub-model", stream: true, max_tokens: 6, messages: [{role: "user", content: "hello from a page"}]}),
    });
    show("http", String(res.status));
    show("group", res.headers.get("x-litellm-model-group") || "");
    show("rpm", res.headers.get("x-litellm-key-rpm-limit") || "");
    if (!res.ok) {
      const body = await res.json();
      show("error", body.error.message);
      show("status", "error");
      return;
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
        const delta = (JSON.parse(event.slice(6)).choices[0] || {}).delta || {};
        if (delta.content) document.getElementById("answer").textContent += delta.content;
      }
    }
    show("status", "done");
  } catch (e) {
    show("error", String(e));
    show("status", "failed");
  }
}
run();
</script>
</body></html>
"""


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: scripts/lib.sh ensure_os_packages installs Debian's chromium"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def open_page(browser, page_origin: str, proxy_url: str, key: str) -> dict:
    """Load the page from ``page_origin``, wait until its script ends, and read what it shows."""
    page = browser.new_page()
    try:
        page.goto(f"{page_origin}/?proxy={proxy_url}&key={key}")
        page.wait_for_function("document.getElementById('status').textContent !== 'running'", timeout=30000)
        return {name: page.inner_text(f"#{name}") for name in ("status", "http", "group", "rpm", "answer", "error")}
    finally:
        page.close()


def test_a_page_on_another_origin_streams_a_chat_answer(browser, page_server, proxy):
    origin = page_server()
    key = new_key(proxy, key_alias=uid("browser"), models=["stub-model"], rpm_limit=50)
    shown = open_page(browser, origin, proxy.url, key)
    assert shown == {"status": "done", "http": "200", "group": "stub-model", "rpm": "50", "answer": "tok0 tok1 tok2 tok3 tok4 tok5",
                     "error": ""}
    # The answer was charged once to that key (4 prompt words, 6 completion tokens).
    token = hash_token(key)
    wait_for(lambda: db_value(proxy.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', token) == 1, message="spend row")


def test_a_page_shows_the_proxys_error_for_a_wrong_key(browser, page_server, proxy):
    origin = page_server()
    wrong = "sk-not-a-real-key-4711"
    shown = open_page(browser, origin, proxy.url, wrong)
    assert shown == {"status": "error", "http": "401", "group": "", "rpm": "", "answer": "",
                     "error": "Authentication Error, Invalid proxy server token passed. Received API Key = sk-...4711, Key Hash (Token) ="
                              f"{hash_token(wrong)}. Unable to find token in cache or `LiteLLM_VerificationTokenTable`"}


def test_the_allow_list_holds_in_the_browser(browser, restricted):
    p, allowed, other = restricted
    key = new_key(p, models=["stub-model"])
    shown = open_page(browser, allowed, p.url, key)
    assert shown["status"] == "done" and shown["answer"] == "tok0 tok1 tok2 tok3 tok4 tok5", shown
    # From an origin that is not on the list the browser refuses the preflight's answer: the POST is never sent.
    shown = open_page(browser, other, p.url, key)
    assert shown == {"status": "failed", "http": "", "group": "", "rpm": "", "answer": "", "error": "TypeError: Failed to fetch"}
    wait_for(lambda: p.admin("GET", "/health/readiness")[1]["spend_records_buffered"] == 0, message="spend written")
    assert db_value(p.dsn, 'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key = %s', hash_token(key)) == 1

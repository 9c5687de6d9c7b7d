# -*- coding: utf-8 -*-
# Apache-2.0 (see LICENSE)
"""Client for the proxy's LiteLLM-compatible management API.

One client per service: it owns the connection argspec (``PROXY_API_ARGSPEC``, documented by the
``rhpds.litemaas.proxy_api`` doc fragment), the HTTP session, ``request()`` and small
get/create/update/delete helpers. Modules build the desired state and call it.

Errors are raised as ``ProxyApiError`` subclasses whose ``str()`` is one line naming the method,
the path, the HTTP status and the server's message; ``main()`` turns them into ``fail_json``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import socket
import ssl
import threading
import time

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.six.moves import http_client
from ansible.module_utils.six.moves.urllib.parse import urlencode, urlparse

PROXY_API_ARGSPEC = dict(
    api_url=dict(type="str", required=True, aliases=["proxy_url", "litellm_url"], fallback=(env_fallback, ["LITEMAAS_PROXY_URL"])),
    api_key=dict(
        type="str",
        required=True,
        no_log=True,
        aliases=["master_key", "litellm_master_key"],
        fallback=(env_fallback, ["LITEMAAS_MASTER_KEY", "LITELLM_MASTER_KEY"]),
    ),
    validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["LITEMAAS_VALIDATE_CERTS"])),
    ca_path=dict(type="path", fallback=(env_fallback, ["LITEMAAS_CA_PATH"])),
    request_timeout=dict(type="float", default=30.0, fallback=(env_fallback, ["LITEMAAS_REQUEST_TIMEOUT"])),
)

# Statuses after which the server did not act on the request, so sending it again is safe.
RETRY_STATUSES_ANY = (429, 503)
# Statuses (and connection failures) retried for reads only.
RETRY_STATUSES_READ = (429, 502, 503, 504)
READ_METHODS = ("GET", "HEAD")
KEY_LIST_PAGE_SIZE = 100


class ProxyApiError(Exception):
    """A failed call to the management API. ``str()`` is the one-line message for ``fail_json``."""

    def __init__(self, method, path, status=None, message="", body=None):
        self.method = method
        self.path = path
        self.status = status
        self.message = message
        self.body = body
        super(ProxyApiError, self).__init__(self.one_line())

    def one_line(self):
        if self.status is None:
            text = "%s %s failed: %s" % (self.method, self.path, self.message)
        else:
            text = "%s %s failed with HTTP %s: %s" % (self.method, self.path, self.status, self.message)
        return " ".join(text.split())


class ProxyConnectionError(ProxyApiError):
    """The server could not be reached (refused, DNS, TLS, timeout)."""


class ProxySetupError(ProxyApiError):
    """Unusable connection options (URL, CA file)."""

    def one_line(self):
        return "Invalid proxy connection options: %s" % " ".join(self.message.split())


class ProxyAuthError(ProxyApiError):
    """401/403: wrong or missing master key."""


class ProxyNotFoundError(ProxyApiError):
    """404."""


class ProxyBadRequestError(ProxyApiError):
    """400/409/422: the server refused the input."""


class ProxyServerError(ProxyApiError):
    """5xx and anything else unexpected."""


def error_class_for(status):
    if status in (401, 403):
        return ProxyAuthError
    if status == 404:
        return ProxyNotFoundError
    if status in (400, 409, 422):
        return ProxyBadRequestError
    return ProxyServerError


def server_message(raw):
    """Extract the human message from an error body of either LiteLLM shape (or plain text)."""
    if raw is None:
        return ""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    text = raw.strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500]
    return _message_from(data)[:500]


def _message_from(data):
    if isinstance(data, dict):
        for key in ("error", "detail", "message", "msg"):
            if key in data:
                return _message_from(data[key])
        return json.dumps(data, sort_keys=True)
    if isinstance(data, list):
        parts = []
        for item in data:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(x) for x in item.get("loc", []))
                parts.append("%s: %s" % (loc, item["msg"]) if loc else str(item["msg"]))
            else:
                parts.append(_message_from(item))
        return "; ".join(parts)
    return str(data)


class HttpSession:
    """One keep-alive HTTP(S) connection per thread to one server, with the TLS context built once.

    (``ansible.module_utils.urls.Request`` builds a new opener, TLS context and TCP connection for every call and
    installs the opener process-wide, which costs tens of milliseconds of CPU per call and is not thread-safe;
    bulk modules make thousands of calls from a thread pool.)
    """

    def __init__(self, base_url, validate_certs=True, ca_path=None, timeout=30.0, headers=None):
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("api_url must be an http:// or https:// URL, got %r" % base_url)
        self.scheme = parsed.scheme
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.prefix = parsed.path.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})
        self.context = None
        if self.scheme == "https":
            self.context = ssl.create_default_context(cafile=ca_path) if validate_certs else ssl._create_unverified_context()
            if not validate_certs:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE
        self._local = threading.local()

    def _connect(self):
        if self.scheme == "https":
            conn = http_client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        else:
            conn = http_client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self._local.conn = conn
        self._local.used = False
        return conn

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def open(self, method, path, body=None, headers=None):
        """Send one request and return ``(status, response)`` with the body not yet read, for callers that read it
        piece by piece (server-sent events). Read the body to its end to keep the connection for the next call, or
        call ``close()``. Raises ``OSError`` (incl. timeouts) when there is no answer.

        A failure on a reused idle connection before any answer (the server closed it meanwhile) is retried once on
        a new connection: the server had not received that request.
        """
        all_headers = dict(self.headers)
        all_headers.update(headers or {})
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None) or self._connect()
            reused = self._local.used
            try:
                conn.request(method, self.prefix + path, body=body, headers=all_headers)
                resp = conn.getresponse()
            except (http_client.RemoteDisconnected, http_client.BadStatusLine, ConnectionResetError, BrokenPipeError) as exc:
                self.close()
                if reused and attempt == 1:
                    continue
                raise ConnectionError("connection closed by the server: %s" % (exc or type(exc).__name__))
            except (OSError, http_client.HTTPException):
                self.close()
                raise
            self._local.used = True
            return resp.status, resp
        raise ConnectionError("connection closed by the server")

    def finish(self, resp):
        """After the body of ``resp`` was read: drop the connection when the server asked to close it."""
        if resp.getheader("connection", "").lower() == "close":
            self.close()

    def send(self, method, path, body=None, headers=None):
        """Return ``(status, response headers, raw body)``. Raises ``OSError`` (incl. timeouts) when there is no answer."""
        status, resp = self.open(method, path, body, headers)
        try:
            raw = resp.read()
        except (OSError, http_client.HTTPException):
            self.close()
            raise
        self.finish(resp)
        return status, resp, raw


class ProxyClient:
    """A thin, thread-safe client. ``request()`` returns decoded JSON (or text) and raises ``ProxyApiError``."""

    def __init__(self, api_url, api_key, validate_certs=True, ca_path=None, request_timeout=30.0, max_attempts=4, retry_budget=20.0, sleep=time.sleep):
        if not api_url:
            raise ValueError("api_url is required")
        self.base_url = api_url.rstrip("/")
        self.api_key = api_key
        self.timeout = request_timeout
        self.max_attempts = max(1, int(max_attempts))
        self.retry_budget = retry_budget
        self._sleep = sleep
        self._session = HttpSession(
            self.base_url,
            validate_certs=validate_certs,
            ca_path=ca_path,
            timeout=request_timeout,
            headers={"Authorization": "Bearer %s" % api_key, "Accept": "application/json", "User-Agent": "rhpds.litemaas"},
        )

    @classmethod
    def from_module(cls, module):
        p = module.params
        try:
            return cls(p["api_url"], p["api_key"], validate_certs=p["validate_certs"], ca_path=p["ca_path"], request_timeout=p["request_timeout"])
        except (OSError, ValueError, ssl.SSLError) as exc:
            raise ProxySetupError("", p["api_url"], None, str(exc))

    # -- transport ---------------------------------------------------------------------------------

    def request(self, method, path, body=None, query=None, ok_missing=False):
        """Send one call. Reads (and 429/503 answers to anything) are retried with backoff, bounded by a
        monotonic clock; a write whose fate is unknown (timeout, 502) is never sent again.

        With ``ok_missing``, a 404 returns ``None`` instead of raising.
        """
        method = method.upper()
        if query:
            query = dict((k, v) for k, v in query.items() if v is not None)
            path = "%s?%s" % (path, urlencode(sorted(query.items()))) if query else path
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        is_read = method in READ_METHODS
        deadline = time.monotonic() + self.retry_budget
        attempt = 0
        waited = 0.0
        while True:
            attempt += 1
            retry_after = None
            try:
                status, resp, raw = self._session.send(method, path, data, headers)
            except (socket.timeout, OSError, http_client.HTTPException) as exc:
                reason = "timed out after %ss" % self.timeout if isinstance(exc, socket.timeout) else (str(exc) or type(exc).__name__)
                err = ProxyConnectionError(method, path, None, "cannot reach %s: %s" % (self.base_url, reason))
                # A write that may have reached the server is not repeated: it could have been applied.
                retryable = is_read or isinstance(exc, ConnectionRefusedError)
            else:
                if status < 400:
                    return self._decode(raw)
                if status == 404 and ok_missing:
                    return None
                retryable = status in RETRY_STATUSES_ANY or (is_read and status in RETRY_STATUSES_READ)
                err = error_class_for(status)(method, path, status, server_message(raw) or resp.reason, raw)
                if status == 429:
                    retry_after = _retry_after(resp)
            wait = retry_after if retry_after is not None else min(0.25 * (2 ** (attempt - 1)), 4.0)
            if not retryable or attempt >= self.max_attempts or time.monotonic() + wait > deadline or waited + wait > self.retry_budget:
                raise err
            waited += wait
            self._sleep(wait)

    @staticmethod
    def _decode(raw):
        if not raw:
            return {}
        text = raw.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return text

    def get(self, path, query=None, ok_missing=False):
        return self.request("GET", path, query=query, ok_missing=ok_missing)

    def post(self, path, body=None, ok_missing=False):
        return self.request("POST", path, body=body if body is not None else {}, ok_missing=ok_missing)

    def patch(self, path, body=None):
        return self.request("PATCH", path, body=body if body is not None else {})

    # -- keys --------------------------------------------------------------------------------------

    def list_keys_page(self, page=1, size=KEY_LIST_PAGE_SIZE, **filters):
        query = dict(page=page, size=size, return_full_object="true")
        query.update(filters)
        return self.get("/key/list", query=query)

    def iter_keys(self, size=KEY_LIST_PAGE_SIZE, **filters):
        """Yield every key (as a dict) matching the filters, paging through all pages."""
        page = 1
        while True:
            data = self.list_keys_page(page=page, size=size, **filters)
            items = keys_of(data)
            for item in items:
                yield self.expand_key(item)
            total_pages = data.get("total_pages") if isinstance(data, dict) else None
            if not items or (total_pages is not None and page >= int(total_pages)) or (total_pages is None and len(items) < size):
                return
            page += 1

    def list_all_keys(self, size=KEY_LIST_PAGE_SIZE, executor=None, **filters):
        """Every key matching the filters. With an executor, pages after the first are fetched concurrently."""
        first = self.list_keys_page(page=1, size=size, **filters)
        total_pages = first.get("total_pages") if isinstance(first, dict) else None
        if executor is None or not total_pages or int(total_pages) <= 1:
            return list(self.iter_keys(size=size, **filters))
        pages = [first] + list(executor.map(lambda p: self.list_keys_page(page=p, size=size, **filters), range(2, int(total_pages) + 1)))
        items = [item for data in pages for item in keys_of(data)]
        if any(not isinstance(item, dict) for item in items):
            items = list(executor.map(self.expand_key, items))
        return _dedupe_tokens(items)

    def expand_key(self, item):
        """``/key/list`` returns hashes unless the server honours ``return_full_object``; fetch the info then."""
        if isinstance(item, dict):
            return item
        info = self.key_info(item)
        if info is None:
            return {"token": item}
        return info

    def key_info(self, key):
        """Info for one key (plaintext or hash) with its ``token``, or None when it does not exist."""
        data = self.get("/key/info", query={"key": key}, ok_missing=True)
        if data is None:
            return None
        info = data.get("info", data) if isinstance(data, dict) else {}
        info = dict(info)
        if not info.get("token"):
            token = data.get("token") or (data.get("key") if not str(data.get("key", "")).startswith("sk-") else None)
            info["token"] = token or hash_key(key)
        return info

    def find_key_by_alias(self, alias):
        """The key with this alias, or None. Aliases are unique on a LiteLLM-compatible proxy."""
        data = self.list_keys_page(page=1, size=KEY_LIST_PAGE_SIZE, key_alias=alias)
        for item in keys_of(data):
            info = self.expand_key(item)
            if info.get("key_alias") == alias:
                return info
        return None

    def generate_key(self, body):
        return self.post("/key/generate", body)

    def update_key(self, token, changes):
        body = dict(changes)
        body["key"] = token
        return self.post("/key/update", body)

    def delete_keys(self, tokens):
        """Delete keys by token; a 404 (none of them exists) counts as done."""
        return self.post("/key/delete", {"keys": list(tokens)}, ok_missing=True)

    def regenerate_key(self, token, body=None):
        payload = dict(body or {})
        payload["key"] = token
        return self.post("/key/regenerate", payload)

    def set_blocked(self, token, blocked):
        return self.post("/key/block" if blocked else "/key/unblock", {"key": token})

    # -- models ------------------------------------------------------------------------------------

    def list_models(self):
        data = self.get("/model/info")
        if isinstance(data, dict):
            return list(data.get("data") or [])
        return []

    def create_model(self, body):
        return self.post("/model/new", body)

    def update_model(self, model_id, body):
        return self.patch("/model/%s/update" % model_id, body)

    def delete_model(self, model_id):
        return self.post("/model/delete", {"id": model_id}, ok_missing=True)


def keys_of(data):
    if isinstance(data, dict):
        return list(data.get("keys") or data.get("data") or [])
    if isinstance(data, list):
        return data
    return []


def hash_key(key):
    """The proxy's token for a key: SHA-256 hex of an ``sk-`` secret; a hash is kept as it is."""
    import hashlib

    if key.startswith("sk-"):
        return hashlib.sha256(key.encode("utf-8")).hexdigest()
    return key


def _dedupe_tokens(items):
    seen = set()
    out = []
    for item in items:
        token = item.get("token") if isinstance(item, dict) else item
        if token in seen:
            continue
        seen.add(token)
        out.append(item)
    return out


def _retry_after(resp):
    try:
        value = float(resp.getheader("retry-after"))
    except (TypeError, ValueError, AttributeError):
        return None
    return max(0.0, min(value, 5.0))

"""A tiny JSON client for the proxy's management API (standard library only)."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional


class ApiError(Exception):
    """An HTTP error from the management API, as one line: method, path, status and the server's message."""

    def __init__(self, method: str, path: str, status: Optional[int], message: str):
        self.method, self.path, self.status, self.message = method, path, status, message
        where = f"status {status}" if status is not None else "no response"
        super().__init__(f"{method} {path} failed ({where}): {message}")


def _server_message(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:300] or "(empty body)"
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        detail = body.get("detail")
        if detail:
            return detail if isinstance(detail, str) else json.dumps(detail)
    return text[:300]


class AdminClient:
    """``request()`` plus the two calls the tools need. Reads (GET) are retried on 429/502/503 and connection errors."""

    RETRY_STATUSES = (429, 502, 503)

    def __init__(self, base_url: str, master_key: str, timeout: float = 30.0, verify: bool = True, ca_path: Optional[str] = None,
                 read_retries: int = 3):
        self.base_url = base_url.rstrip("/")
        self.master_key = master_key
        self.timeout = timeout
        self.read_retries = read_retries
        self._ctx = None
        if self.base_url.startswith("https"):
            self._ctx = ssl.create_default_context(cafile=ca_path) if verify else ssl._create_unverified_context()  # noqa: S323

    def request(self, method: str, path: str, query: Optional[dict] = None, body: Any = None) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.master_key}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        attempts = 1 + (self.read_retries if method == "GET" else 0)
        deadline = time.monotonic() + self.timeout * attempts
        for attempt in range(attempts):
            req = urllib.request.Request(url, data=data, method=method, headers=headers)
            error, retry = None, False
            try:
                with urllib.request.urlopen(req, timeout=self.timeout, context=self._ctx) as resp:
                    raw = resp.read()
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                error = ApiError(method, path, exc.code, _server_message(exc.read()))
                retry = exc.code in self.RETRY_STATUSES
            except (urllib.error.URLError, OSError) as exc:
                error = ApiError(method, path, None, str(getattr(exc, "reason", exc)))
                retry = True
            if not retry or attempt == attempts - 1 or time.monotonic() >= deadline:
                raise error
            time.sleep(min(0.5 * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    def list_all_keys(self, page_size: int = 100) -> list:
        """Every key, as full objects, paging through ``GET /key/list`` until the last page."""
        page_size = max(1, min(int(page_size), 100))
        keys: list = []
        page = 1
        while True:
            body = self.request("GET", "/key/list", {"page": page, "size": page_size, "return_full_object": "true"}) or {}
            batch = body.get("keys") or body.get("data") or []
            keys.extend(k for k in batch if isinstance(k, dict))
            total_pages = body.get("total_pages")
            if total_pages is None:
                if len(batch) < page_size:
                    break
            elif page >= int(total_pages):
                break
            if not batch:
                break
            page += 1
        return keys

    def delete_keys(self, tokens: list) -> Any:
        return self.request("POST", "/key/delete", body={"keys": list(tokens)})

"""One line per request, when ``LITEMAAS_ACCESS_LOG`` (or ``general_settings.access_log``) is on.

The line names the caller by key alias (or the first characters of its hash), never by the key: the query string
is left out (``/key/info?key=sk-...``), and a key in the path (``/key/{key}/regenerate``) is masked.
"""

from __future__ import annotations

import re

from aiohttp.abc import AbstractAccessLogger

from litemaas_proxy.auth import MASTER

_KEY_IN_PATH = re.compile(r"sk-[^/?#\s]*")


def mask_path(path: str) -> str:
    return _KEY_IN_PATH.sub(lambda m: "sk-..." + m.group(0)[-4:] if len(m.group(0)) > 11 else "sk-...", path)


def caller_label(entry) -> str:
    if entry is None:
        return "-"
    if entry is MASTER:
        return "master"
    alias = entry.key.get("key_alias")
    return str(alias) if alias else "token:" + str(entry.token)[:12]


class AccessLogger(AbstractAccessLogger):
    def log(self, request, response, time: float) -> None:
        entry = request.get("litemaas_caller")
        user = entry.key.get("user_id") if entry is not None and entry is not MASTER else None
        self.logger.info("%s %s %s %s %dB %.1fms key=%s user=%s model=%s", request.remote or "-", request.method, mask_path(request.path),
                         response.status, response.body_length, time * 1000.0, caller_label(entry), user or "-",
                         request.get("litemaas_model") or "-")

"""Error responses in LiteLLM's shapes: A = {"error": {...}} (default), B = {"detail": ...} (validation)."""

from __future__ import annotations

from typing import Any, Optional

import orjson
from aiohttp import web


class ProxyError(Exception):
    """Shape A: {"error": {"message", "type", "param", "code": "<status>"}}."""

    def __init__(self, status: int, message: str, type: str = "None", param: Any = "None", headers: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.headers = headers

    def body(self) -> bytes:
        return orjson.dumps({"error": {"message": self.message, "type": self.type, "param": self.param, "code": str(self.status)}})

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=self.body(), content_type="application/json", headers=self.headers)


class DetailError(Exception):
    """Shape B (FastAPI style): {"detail": ...}, used for 422 validation errors and a few routes."""

    def __init__(self, status: int, detail: Any):
        super().__init__(str(detail))
        self.status = status
        self.detail = detail

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=orjson.dumps({"detail": self.detail}), content_type="application/json")


def bad_request(message: str, param: Any = "None", type: str = "bad_request_error") -> ProxyError:
    return ProxyError(400, message, type, param)


def validation_error(loc: list, msg: str, input: Any = None, type: str = "value_error") -> DetailError:
    return DetailError(422, [{"type": type, "loc": loc, "msg": msg, "input": input}])


def not_found(message: str, param: Any = "None") -> ProxyError:
    return ProxyError(404, message, "not_found_error", param)


def json_response(data: Any, status: int = 200, headers: Optional[dict] = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), content_type="application/json", headers=headers)

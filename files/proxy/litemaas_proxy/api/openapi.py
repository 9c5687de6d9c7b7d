"""``GET /openapi.json``: the OpenAPI 3 document of the proxy's public routes (``litemaas_proxy/openapi.yaml``).

The document itself needs no key; the routes it describes keep their own authentication.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import orjson
import yaml
from aiohttp import web

from litemaas_proxy import __version__
from litemaas_proxy.api.routes import PUBLIC, Route

DOCUMENT = Path(__file__).resolve().parent.parent / "openapi.yaml"


@lru_cache(maxsize=1)
def document() -> dict:
    with open(DOCUMENT, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    doc["info"]["version"] = __version__
    return doc


@lru_cache(maxsize=1)
def document_bytes() -> bytes:
    return orjson.dumps(document())


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=document_bytes(), content_type="application/json")


ROUTES = [Route("GET", "/openapi.json", openapi_json, PUBLIC)]

"""A stand-in of a collection server with Galaxy's v3 API (Automation Hub, galaxy_ng, pulp_ansible), for
``ansible-galaxy collection install NAMESPACE.NAME`` with ``ANSIBLE_GALAXY_SERVER`` naming it.

It serves the collection artifacts it is given (built tarballs) with the v3 routes ``ansible-galaxy`` reads:
``/api/`` (available versions), ``/api/v3/collections/NS/NAME/`` (the collection, with its update time),
``.../versions/?limit=N`` (paginated as Automation Hub does: ``meta``, ``links`` with relative links, ``data``),
``.../versions/VERSION/`` (namespace, collection, version, ``download_url``, ``artifact`` with its SHA-256, and
``metadata.dependencies`` read from the artifact's MANIFEST.json) and the download itself. Anything else answers 404
with the error body of the v3 API; a path without its final slash is redirected to it. Every request is recorded in ``requests`` (method, path).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


class GalaxyServer:
    def __init__(self, artifacts: list):
        self.requests: list = []
        self._versions: dict = {}  # (namespace, name) -> {version: entry}
        for path in map(Path, artifacts):
            with tarfile.open(path) as tar:
                manifest = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
            key = (manifest["namespace"], manifest["name"])
            self._versions.setdefault(key, {})[manifest["version"]] = {
                "path": path, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "info": manifest,
                "created": datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat().replace("+00:00", "Z")}
        self._httpd = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def start(self) -> GalaxyServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, path: str):
        """(status, JSON document or (file, bytes)) for a GET of ``path``."""
        base = "/api/v3/collections/"
        if path == "/api/":
            return 200, {"available_versions": {"v3": "v3/"}}
        if not path.startswith(base):
            return 404, _not_found()
        parts = [p for p in path[len(base):].split("/") if p]
        versions = self._versions.get(tuple(parts[:2]), {}) if len(parts) >= 2 else {}
        if not versions:
            return 404, _not_found()
        namespace, name = parts[:2]
        href = f"{base}{namespace}/{name}/"
        if len(parts) == 2:
            newest = max(versions, key=_version_key)
            return 200, {"href": href, "namespace": namespace, "name": name, "deprecated": False,
                         "highest_version": {"href": f"{href}versions/{newest}/", "version": newest},
                         "created_at": min(v["created"] for v in versions.values()),
                         "updated_at": max(v["created"] for v in versions.values())}
        if parts[2:] == ["versions"]:
            data = [{"version": v, "href": f"{href}versions/{v}/", "created_at": e["created"], "updated_at": e["created"],
                     "requires_ansible": None} for v, e in sorted(versions.items(), key=lambda item: _version_key(item[0]), reverse=True)]
            return 200, {"meta": {"count": len(data)}, "links": {"first": f"{href}versions/?limit=100&offset=0", "previous": None,
                                                                 "next": None, "last": f"{href}versions/?limit=100&offset=0"}, "data": data}
        if len(parts) == 4 and parts[2] == "versions" and parts[3] in versions:
            entry = versions[parts[3]]
            filename = entry["path"].name
            return 200, {"href": f"{href}versions/{parts[3]}/", "namespace": {"name": namespace}, "collection": {"name": name},
                         "version": parts[3], "download_url": f"{self.url}download/{filename}",
                         "artifact": {"filename": filename, "sha256": entry["sha256"], "size": entry["path"].stat().st_size},
                         "metadata": {"dependencies": entry["info"].get("dependencies") or {}, "description": entry["info"].get("description"),
                                      "tags": entry["info"].get("tags") or []},
                         "signatures": []}
        return 404, _not_found()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - the name http.server calls
                path = urlsplit(self.path).path
                server.requests.append(("GET", path))
                if path.startswith("/download/"):
                    found = [e["path"] for versions in server._versions.values() for e in versions.values() if e["path"].name == path[10:]]
                    if found:
                        body, kind = found[0].read_bytes(), "application/gzip"
                        self.send_response(200)
                    else:
                        body, kind = json.dumps(_not_found()).encode(), "application/json"
                        self.send_response(404)
                elif not path.endswith("/"):
                    # As galaxy_ng (Django's APPEND_SLASH) answers ``/api``, the first URL ansible-galaxy tries.
                    self.send_response(301)
                    self.send_header("Location", path + "/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                else:
                    status, document = server.answer(path)
                    body, kind = json.dumps(document).encode(), "application/json"
                    self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _not_found() -> dict:
    return {"errors": [{"status": "404", "code": "not_found", "title": "Not found."}]}


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("-")[0].split("."))

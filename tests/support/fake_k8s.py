"""A small in-memory Kubernetes API server on loopback, enough for kubernetes.core's k8s and k8s_info modules to run
the manifest pipeline's cluster path: discovery, GET/LIST (label selectors), server-side apply (PATCH with
application/apply-patch+yaml), DELETE. Core ConfigMaps and Secrets only (namespaced). Every request is logged so a
test can check what the client did (content type, field manager, force)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import yaml

RESOURCES = {"configmaps": "ConfigMap", "secrets": "Secret"}


def _resource_list():
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
        {"name": name, "singularName": kind.lower(), "namespaced": True, "kind": kind,
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]} for name, kind in RESOURCES.items()]}


def _matches(labels: dict, selector: str) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, dummy, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


class FakeKubernetes:
    def __init__(self):
        self.objects: dict = {}  # (resource, namespace, name) -> object
        self.requests: list = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def names(self, resource: str, namespace: str) -> list:
        return sorted(n for (r, ns, n) in self.objects if r == resource and ns == namespace)

    def kubeconfig(self) -> dict:
        return {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "users": [{"name": "fake", "user": {"token": "fake-token"}}]}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self):
                url = urlsplit(self.path)
                parts = [p for p in url.path.split("/") if p]
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with fake._lock:
                    fake.requests.append({"method": self.command, "path": url.path, "query": query,
                                          "content_type": self.headers.get("Content-Type", "")})
                return parts, query

            def _not_found(self, what):
                self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                                 "message": f"{what} not found"})

            def do_GET(self):  # noqa: N802
                parts, query = self._route()
                if parts == ["version"]:
                    return self._send(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0"})
                if parts == ["api"]:
                    return self._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
                if parts == ["apis"]:
                    return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
                if parts == ["api", "v1"]:
                    return self._send(200, _resource_list())
                if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] in RESOURCES:
                    ns, resource = parts[3], parts[4]
                    items = [o for (r, n, dummy), o in sorted(fake.objects.items()) if r == resource and n == ns
                             and _matches(o["metadata"].get("labels") or {}, query.get("labelSelector", ""))]
                    return self._send(200, {"kind": RESOURCES[resource] + "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                                            "items": items})
                if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] in RESOURCES:
                    obj = fake.objects.get((parts[4], parts[3], parts[5]))
                    return self._send(200, obj) if obj else self._not_found(f"{parts[4]} {parts[5]}")
                return self._not_found(self.path)

            def do_PATCH(self):  # noqa: N802
                parts, query = self._route()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if len(parts) != 6 or parts[4] not in RESOURCES:
                    return self._not_found(self.path)
                if self.headers.get("Content-Type") != "application/apply-patch+yaml":
                    return self._send(415, {"kind": "Status", "code": 415, "message": "only server-side apply is served here"})
                patch = yaml.safe_load(body)
                key = (parts[4], parts[3], parts[5])
                with fake._lock:
                    obj = dict(fake.objects.get(key) or {})
                    obj.update(patch)
                    meta = dict(patch.get("metadata") or {})
                    meta.update(namespace=parts[3], name=parts[5], uid=f"uid-{parts[5]}", resourceVersion="1",
                                managedFields=[{"manager": query.get("fieldManager"), "operation": "Apply"}])
                    obj["metadata"] = meta
                    fake.objects[key] = obj
                return self._send(200, obj)

            def do_DELETE(self):  # noqa: N802
                parts, dummy = self._route()
                key = (parts[4], parts[3], parts[5]) if len(parts) == 6 else None
                with fake._lock:
                    obj = fake.objects.pop(key, None) if key else None
                if obj is None:
                    return self._not_found(self.path)
                return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        return Handler

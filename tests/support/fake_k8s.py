"""A small in-memory Kubernetes API server on loopback, enough for kubernetes.core's k8s and k8s_info modules to run
the manifest pipeline's cluster path: discovery, GET/LIST (label selectors), server-side apply (PATCH with
application/apply-patch+yaml), DELETE. Namespaced ConfigMaps, Secrets and apps/v1 Deployments; a Deployment is reported
rolled out at once, or never when ``stuck`` is set (to see the waits fail). Every request is logged so a test can check
what the client did (content type, field manager, force)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import yaml

GROUPS = {"v1": {"configmaps": "ConfigMap", "secrets": "Secret", "serviceaccounts": "ServiceAccount"},
          "apps/v1": {"deployments": "Deployment"},
          "rbac.authorization.k8s.io/v1": {"roles": "Role", "rolebindings": "RoleBinding"},
          "serving.kserve.io/v1beta1": {"inferenceservices": "InferenceService"},
          "serving.kserve.io/v1alpha1": {"servingruntimes": "ServingRuntime"},
          "argoproj.io/v1alpha1": {"applications": "Application"}}
RESOURCES = {name: kind for resources in GROUPS.values() for name, kind in resources.items()}


def _resource_list(group_version):
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": [
        {"name": name, "singularName": kind.lower(), "namespaced": True, "kind": kind,
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]} for name, kind in GROUPS[group_version].items()]}


def _group_list():
    groups = {}
    for group_version in GROUPS:
        if "/" in group_version:
            group, version = group_version.split("/")
            groups.setdefault(group, []).append({"groupVersion": group_version, "version": version})
    return [{"name": g, "versions": v, "preferredVersion": v[0]} for g, v in groups.items()]


def _object_path(parts):
    """(group version, namespace, resource, name or None) of /api/v1/namespaces/NS/RES[/NAME] or /apis/G/V/namespaces/..."""
    if parts[:2] == ["api", "v1"]:
        group_version, rest = "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group_version, rest = "/".join(parts[1:3]), parts[3:]
    else:
        return None
    if len(rest) in (3, 4) and rest[0] == "namespaces" and rest[2] in GROUPS.get(group_version, {}):
        return group_version, rest[1], rest[2], rest[3] if len(rest) == 4 else None
    return None


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
        self.stuck = False  # Deployments never become available
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

    def set_status(self, resource: str, namespace: str, name: str, status: dict) -> None:
        """Set an object's status, as its controller would (server-side apply of the spec keeps it)."""
        with self._lock:
            self.objects[(resource, namespace, name)]["status"] = status

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
                    return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": _group_list()})
                if parts == ["api", "v1"] or (parts[:1] == ["apis"] and len(parts) == 3 and "/".join(parts[1:]) in GROUPS):
                    return self._send(200, _resource_list("v1" if parts[0] == "api" else "/".join(parts[1:])))
                target = _object_path(parts)
                if target is None:
                    return self._not_found(self.path)
                dummy, ns, resource, name = target
                if name is None:
                    items = [o for (r, n, dummy), o in sorted(fake.objects.items()) if r == resource and n == ns
                             and _matches(o["metadata"].get("labels") or {}, query.get("labelSelector", ""))]
                    return self._send(200, {"kind": RESOURCES[resource] + "List", "apiVersion": target[0], "metadata": {"resourceVersion": "1"},
                                            "items": items})
                obj = fake.objects.get((resource, ns, name))
                return self._send(200, obj) if obj else self._not_found(f"{resource} {name}")

            def do_PATCH(self):  # noqa: N802
                parts, query = self._route()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                target = _object_path(parts)
                if target is None or target[3] is None:
                    return self._not_found(self.path)
                if self.headers.get("Content-Type") != "application/apply-patch+yaml":
                    return self._send(415, {"kind": "Status", "code": 415, "message": "only server-side apply is served here"})
                dummy, ns, resource, name = target
                patch = yaml.safe_load(body)
                with fake._lock:
                    obj = dict(fake.objects.get((resource, ns, name)) or {})
                    obj.update(patch)
                    meta = dict(patch.get("metadata") or {})
                    meta.update(namespace=ns, name=name, uid=f"uid-{name}", resourceVersion="1", generation=1,
                                managedFields=[{"manager": query.get("fieldManager"), "operation": "Apply"}])
                    obj["metadata"] = meta
                    if resource == "deployments":
                        replicas = (obj.get("spec") or {}).get("replicas", 1)
                        ready = 0 if fake.stuck else replicas
                        obj["status"] = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                                         "readyReplicas": ready, "availableReplicas": ready, "unavailableReplicas": replicas - ready,
                                         "conditions": [{"type": "Available", "status": "False" if fake.stuck else "True"}]}
                    fake.objects[(resource, ns, name)] = obj
                return self._send(200, obj)

            def do_DELETE(self):  # noqa: N802
                parts, dummy = self._route()
                target = _object_path(parts)
                key = (target[2], target[1], target[3]) if target and target[3] else None
                with fake._lock:
                    obj = fake.objects.pop(key, None) if key else None
                if obj is None:
                    return self._not_found(self.path)
                return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        return Handler

"""An in-memory Kubernetes API server on loopback that behaves, for what the collection's roles use, as the real
kube-apiserver + kube-controller-manager 1.32 did when the roles were run against them
(``../shared/reference/kube-apiserver-facts.md``). kubernetes.core's ``k8s``, ``k8s_info``, ``k8s_scale`` and the
Python client talk to it unchanged.

What it serves and how:

- **Kinds**: the built-in kinds the roles write or read (core, apps, batch, policy, networking, rbac, storage,
  authorization), OpenShift's aggregated kinds (OAuthClient, BuildConfig, Build, ImageStream) and every CRD in
  ``../shared/crds`` and ``extras/`` (Route, ServiceMonitor, PrometheusRule, Grafana*, InferenceService,
  ServingRuntime, Application, Subscription, ...), read from the CRD files. Discovery lists them with their
  subresources (``status``; ``scale`` for Deployments and StatefulSets; no ``buildconfigs/instantiate``, which
  only a real OpenShift API server has). A kind it does not serve is a 404, as on a server without that API.
- **Validation**: every write is checked with ``tests.support.k8s_schemas`` (the schemas the render tests use).
  Server-side apply is strict: an undeclared field is refused (422 ``.spec.bogus: field not declared in schema``);
  create/update/patch drop it silently. A CronJob schedule must have 5 fields. A Secret's ``stringData`` is merged
  into its ``data``. Writes into a missing namespace are
  404 ``namespaces "x" not found``; into a terminating one 403.
- **Field managers**: each field is owned by the managers that set it (``metadata.managedFields``). Apply
  (``application/apply-patch+yaml``) conflicts with another manager's differing value unless forced, shares
  equal values, and removes the fields the manager no longer applies; other writes (update, patches, the
  ``scale`` subresource) take the fields they change, under ``fieldManager`` or the User-Agent's product name
  (``OpenAPI-Generator`` for the Python client). Lists are atomic. An unchanged object keeps its resourceVersion.
- **Virtual resources**: ``SelfSubjectAccessReview``/``SubjectAccessReview``/``TokenReview`` are create-only
  and stored nowhere; the answer comes from ``allowed`` (``{(group, resource, verb): bool}``, default: allowed).
- **Selectors**: equality and set-based label selectors (``a=b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
  ``a``, ``!a``) and field selectors on ``metadata.name``/``metadata.namespace``/any dotted path.
- **Controllers** (run before each request is answered, so a write's effects show from the next request on, as
  with the real, asynchronous ones): a namespace gets ConfigMap ``kube-root-ca.crt`` and ServiceAccount
  ``default``; Deployments, StatefulSets and Jobs get pods (StatefulSets their volumeClaimTemplate PVCs); pods are
  scheduled on one node unless ``stuck`` (no schedulable node) or a PVC they use is unbound
  (``no_storage_class``; the claim gets a ``FailedBinding`` event), with ``PodScheduled=False`` and a
  ``FailedScheduling`` event; a scheduled pod whose image is in ``unpullable`` waits in ``ImagePullBackOff`` (kubelet
  events ``Failed`` and ``BackOff``); in a namespace labelled ``pod-security.kubernetes.io/enforce: restricted`` a pod
  that violates the restricted profile is refused: a ``FailedCreate`` event on the ReplicaSet (named
  ``<deployment>-<pod-template-hash>``; the fake keeps no ReplicaSet object), StatefulSet or Job, a 403 for a direct
  create; workload status follows the pods. Jobs get the API server's defaults (a selector on their uid, pod labels
  ``batch.kubernetes.io/job-name`` etc.) and one pod at a time, which ends with the exit code ``set_pod_exit`` gives
  (0: Succeeded, the Job Complete; else Failed, retried up to ``backoffLimit``, then the Job Failed with
  BackoffLimitExceeded); a finished Job makes no pod again. With ``gc_finished_pods`` the pod garbage collector
  removes pods that ended; with ``kserve`` a KServe controller reports every InferenceService Ready (raw deployment
  mode URLs, ``../shared/reference/kserve-serving.md``) and, where its ServingRuntime exists, creates its predictor
  Deployment and Service ``<name>-predictor`` (labels ``component: predictor``, ``serving.kserve.io/inferenceservice``;
  Ready then follows the Deployment); with ``gpus`` (the node's ``nvidia.com/gpu``) a pod asking for more GPUs than
  are left stays Pending (``Insufficient nvidia.com/gpu``). A Route created without a host gets
  ``<name>-<namespace>.<ingress domain>``, as OpenShift allocates one. Deletion: finalizers hold an object;
  ``propagationPolicy=Foreground`` holds the owner until its dependents are gone, Background removes dependents after
  the owner; a PVC keeps ``kubernetes.io/pvc-protection`` while any scheduled pod uses it, whatever the pod's phase;
  a namespace is removed with everything in it.
  The tokens controller fills a ``kubernetes.io/service-account-token`` Secret of an existing ServiceAccount and
  deletes one whose ServiceAccount is missing (section "token controller").
- ``dryRun=All`` validates and answers without storing.
- **What kubectl (and so ``oc``) needs** (the section "kubectl's requests" below): short names in discovery
  (``deploy``, ``sts``, ``pvc``, ``svc``, ``sa``, ... and a CRD's ``shortNames``); the ``log`` subresource of pods
  (plain text; what a container wrote is what a test registers in ``.logs``, as the kubelet would hold it, else empty;
  ``previous=true`` without a registered previous log is the kubelet's 400); ``watch=true`` on lists (a chunked
  stream of ``ADDED``/``MODIFIED``/``DELETED`` events, for ``rollout status``); the ``Table`` form of a list or
  object when the client asks for it (``Accept: ...;as=Table``), with the columns a real server prints for
  Deployments, StatefulSets and Pods and a CRD's ``additionalPrinterColumns`` (other kinds: the plain list, which
  kubectl prints as NAME and AGE). A strategic merge patch is applied as a JSON merge patch: the same for what
  ``kubectl annotate`` and ``kubectl rollout restart`` send (maps only), not for lists with merge keys. ``/openapi/v2``
  is a protobuf OpenAPI document without definitions (``kubectl edit`` reads it; it validates no kind against it).
- **The kubelet's side** (tests/support/fake_kubelet.py): ``pods/<name>/exec`` over SPDY/3.1 (remote command
  ``v4.channel.k8s.io``), the command run by what a test registers in ``.exec_runners`` (a stand-in of the container
  runtime), and ``metrics.k8s.io/v1beta1`` PodMetrics of ``.pod_usage`` (only when a test sets it, as metrics-server).

Interface for tests: ``FakeKubernetes().start()``, ``.stop()``, ``.kubeconfig()``, ``.objects`` (``{(resource,
namespace, name): object}``, ``""`` as the namespace of cluster-scoped objects), ``.requests`` (method, path, query,
content type, user agent, parsed body), ``.names(resource, namespace)``, ``.stuck``, ``.no_storage_class``,
``.unpullable``, ``.allowed``, ``.logs``, ``.add(obj)`` (store an object as another writer would, through the same checks),
``.set_status(resource, namespace, name, status)`` (as the object's controller writes it), ``.delete(resource,
namespace, name)``, ``.managers(resource, namespace, name)``, ``.set_pod_log(namespace, pod_prefix, text)`` and
``.pod_log(namespace, pod)`` (what a pod printed, as the test says), ``.set_pod_exit(namespace, pod_prefix, code)``,
``.gc_finished_pods``, ``.kserve``, ``.gpus``, ``.exec_runners``, ``.pod_usage``."""

from __future__ import annotations

import base64
import copy
import datetime
import functools
import hashlib
import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.support import fake_kubelet, k8s_schemas

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
NODE = "node-1"
CONTROLLER = "kube-controller-manager"
# The tokens controller's Secrets (section "token controller" below).
SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"
# gnostic's openapi_v2.Document with only field 1 (swagger) set: "2.0".
OPENAPI_V2_PROTOBUF = b"\x0a\x032.0"
FAKE_CA = "-----BEGIN CERTIFICATE-----\nMIIB (the cluster's service account CA)\n-----END CERTIFICATE-----\n"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# (group/version, plural, kind, namespaced, subresources)
BUILTIN = [
    ("v1", "namespaces", "Namespace", False, ("status",)),
    ("v1", "configmaps", "ConfigMap", True, ()),
    ("v1", "secrets", "Secret", True, ()),
    ("v1", "services", "Service", True, ("status",)),
    ("v1", "serviceaccounts", "ServiceAccount", True, ()),
    ("v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("status",)),
    ("v1", "pods", "Pod", True, ("status",)),
    ("v1", "events", "Event", True, ()),
    ("v1", "resourcequotas", "ResourceQuota", True, ("status",)),
    ("v1", "limitranges", "LimitRange", True, ()),
    ("apps/v1", "deployments", "Deployment", True, ("status", "scale")),
    ("apps/v1", "statefulsets", "StatefulSet", True, ("status", "scale")),
    ("apps/v1", "daemonsets", "DaemonSet", True, ("status",)),
    ("apps/v1", "replicasets", "ReplicaSet", True, ("status", "scale")),
    ("batch/v1", "jobs", "Job", True, ("status",)),
    ("batch/v1", "cronjobs", "CronJob", True, ("status",)),
    ("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("status",)),
    ("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", True, ()),
    ("networking.k8s.io/v1", "ingresses", "Ingress", True, ("status",)),
    ("rbac.authorization.k8s.io/v1", "roles", "Role", True, ()),
    ("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", True, ()),
    ("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", False, ()),
    ("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", False, ()),
    ("storage.k8s.io/v1", "storageclasses", "StorageClass", False, ()),
    ("authorization.k8s.io/v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False, ()),
    ("authorization.k8s.io/v1", "subjectaccessreviews", "SubjectAccessReview", False, ()),
    ("authentication.k8s.io/v1", "tokenreviews", "TokenReview", False, ()),
    # OpenShift's aggregated APIs (no CRD exists upstream; validated against openshift-openapi.json)
    ("oauth.openshift.io/v1", "oauthclients", "OAuthClient", False, ()),
    ("build.openshift.io/v1", "buildconfigs", "BuildConfig", True, ("status",)),
    ("build.openshift.io/v1", "builds", "Build", True, ("status",)),
    ("image.openshift.io/v1", "imagestreams", "ImageStream", True, ("status",)),
]
VIRTUAL = {"selfsubjectaccessreviews", "subjectaccessreviews", "tokenreviews"}
WORKLOADS = {"deployments", "statefulsets", "jobs"}
# Fields the server sets; they are nobody's managed fields and a client cannot change them.
_SERVER_META = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "deletionTimestamp",
                "deletionGracePeriodSeconds", "selfLink")


@functools.lru_cache(maxsize=1)
def served() -> dict:
    """{(group/version, plural): (kind, namespaced, subresources)} of every kind served, CRDs included."""
    out = {(gv, plural): (kind, namespaced, sub) for gv, plural, kind, namespaced, sub in BUILTIN}
    for path in sorted((k8s_schemas.shared_dir() / "crds").rglob("*.yaml")):
        doc = yaml.load(path.read_text(), Loader=_LOADER)
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                sub = tuple(k for k in ("status", "scale") if k in (version.get("subresources") or {}))
                out[(f"{spec['group']}/{version['name']}", spec["names"]["plural"])] = (
                    spec["names"]["kind"], spec.get("scope") == "Namespaced", sub)
    return out


# Short names a real 1.32 API server's discovery gives the built-in kinds (kubectl resolves `deploy`, `sts`, ... by them)
# and OpenShift's aggregated ones; a CRD's come from its spec.names.shortNames.
SHORT_NAMES = {
    ("v1", "namespaces"): ["ns"], ("v1", "configmaps"): ["cm"], ("v1", "services"): ["svc"], ("v1", "serviceaccounts"): ["sa"],
    ("v1", "persistentvolumeclaims"): ["pvc"], ("v1", "pods"): ["po"], ("v1", "events"): ["ev"], ("v1", "resourcequotas"): ["quota"],
    ("v1", "limitranges"): ["limits"], ("apps/v1", "deployments"): ["deploy"], ("apps/v1", "statefulsets"): ["sts"],
    ("apps/v1", "daemonsets"): ["ds"], ("apps/v1", "replicasets"): ["rs"], ("batch/v1", "cronjobs"): ["cj"],
    ("policy/v1", "poddisruptionbudgets"): ["pdb"], ("networking.k8s.io/v1", "networkpolicies"): ["netpol"],
    ("networking.k8s.io/v1", "ingresses"): ["ing"], ("storage.k8s.io/v1", "storageclasses"): ["sc"],
    ("build.openshift.io/v1", "buildconfigs"): ["bc"], ("image.openshift.io/v1", "imagestreams"): ["is"],
}


@functools.lru_cache(maxsize=1)
def short_names() -> dict:
    """{(group/version, plural): [short name]} of every kind served that has short names."""
    out = dict(SHORT_NAMES)
    for path in sorted((k8s_schemas.shared_dir() / "crds").rglob("*.yaml")):
        doc = yaml.load(path.read_text(), Loader=_LOADER)
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition" and doc["spec"]["names"].get("shortNames"):
            for version in doc["spec"]["versions"]:
                out[(f"{doc['spec']['group']}/{version['name']}", doc["spec"]["names"]["plural"])] = list(doc["spec"]["names"]["shortNames"])
    return out


class PlainText(str):
    """A response body sent as text/plain (a pod's log)."""


def _group_versions() -> dict:
    out: dict = {}
    for gv, plural in served():
        out.setdefault(gv, []).append(plural)
    return out


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                "reason": self.reason, "details": self.details, "code": self.code}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------------------------------
# Selectors


_SET_TERM = re.compile(r"^\s*([^\s!=,()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(selector: str) -> list:
    terms, depth, current = [], 0, ""
    for char in selector or "":
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def parse_label_selector(selector: str) -> list:
    """[(key, operator, values)] with operator one of =, !=, in, notin, exists, !exists; a bad term is a 400."""
    out = []
    for term in _split_selector(selector):
        match = _SET_TERM.match(term)
        if match:
            values = {v.strip() for v in match.group(3).split(",") if v.strip()}
            out.append((match.group(1), match.group(2), values))
        elif "!=" in term:
            key, value = term.split("!=", 1)
            out.append((key.strip(), "!=", {value.strip()}))
        elif "=" in term:
            key, value = re.split(r"==?", term, maxsplit=1)
            out.append((key.strip(), "=", {value.strip()}))
        elif term.startswith("!"):
            out.append((term[1:].strip(), "!exists", set()))
        elif re.fullmatch(r"[A-Za-z0-9./_-]+", term):
            out.append((term, "exists", set()))
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return out


def labels_match(labels: dict, selector: str) -> bool:
    for key, op, values in parse_label_selector(selector):
        present, value = key in labels, labels.get(key)
        if (op == "=" and value not in values) or (op == "in" and (not present or value not in values)):
            return False
        if (op in ("!=", "notin") and present and value in values) or (op == "exists" and not present) or (op == "!exists" and present):
            return False
    return True


def _dig(obj, dotted: str):
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def fields_match(obj: dict, selector: str) -> bool:
    for term in _split_selector(selector):
        negate = "!=" in term
        key, value = re.split(r"!=|==?", term, maxsplit=1)
        actual = _dig(obj, key.strip())
        actual = "" if actual is None else str(actual)
        if (actual == value.strip()) == negate:
            return False
    return True


def selector_of_match_labels(match_labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((match_labels or {}).items()))


# --------------------------------------------------------------------------------------------------------------------
# Field paths and managers (lists are atomic)


def leaves(obj, prefix=()) -> dict:
    """{path tuple: value} of the leaves of an object; a list or an empty map is one leaf."""
    out = {}
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            out.update(leaves(value, prefix + (key,)))
    else:
        out[prefix] = obj
    return out


def _owned_paths(obj: dict) -> dict:
    """The leaves a writer sets: not apiVersion/kind, name, namespace, or server-set metadata."""
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k not in _SERVER_META + ("name", "namespace")}
    body["metadata"] = meta
    if not meta:
        body.pop("metadata")
    return {p: v for p, v in leaves(body).items() if p}


def _get(obj, path):
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


_MISSING = object()


def _set(obj, path, value):
    for part in path[:-1]:
        if not isinstance(obj.get(part), dict):
            obj[part] = {}
        obj = obj[part]
    obj[path[-1]] = copy.deepcopy(value)


def _delete(obj, path):
    parents = []
    for part in path[:-1]:
        if not isinstance(obj, dict) or not isinstance(obj.get(part), dict):
            return
        parents.append((obj, part))
        obj = obj[part]
    if isinstance(obj, dict):
        obj.pop(path[-1], None)
    for parent, part in reversed(parents):  # maps left empty by the removal go too
        if parent[part] == {}:
            del parent[part]
        else:
            break


def _fields_v1(paths) -> dict:
    out: dict = {}
    for path in sorted(paths, key=lambda p: [str(x) for x in p]):
        node = out
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return out


def _path_text(path) -> str:
    return "".join(f".{p}" for p in path)


# --------------------------------------------------------------------------------------------------------------------
# Validation


_UNKNOWN = re.compile(r"Additional properties are not allowed \((.*) (?:was|were) unexpected\)")
_PATH_TOKEN = re.compile(r"\.?([A-Za-z_$][\w$-]*)|\[(\d+)\]|\[(\"(?:[^\"\\]|\\.)*\")\]")


def _parse_json_path(text: str) -> tuple:
    if text == "(root)":
        return ()
    out, pos = [], 0
    while pos < len(text):
        match = _PATH_TOKEN.match(text, pos)
        if not match:
            break
        out.append(match.group(1) if match.group(1) is not None else (int(match.group(2)) if match.group(2) else json.loads(match.group(3))))
        pos = match.end()
    return tuple(out)


def _remove_at(obj, path: tuple, key: str):
    for part in path:
        try:
            obj = obj[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(obj, dict):
        obj.pop(key, None)


def _extra_checks(obj: dict) -> list:
    """What the API server checks beyond the OpenAPI schema (kubernetes-validate does not catch these)."""
    out = []
    if obj.get("kind") == "CronJob":
        schedule = str((obj.get("spec") or {}).get("schedule", ""))
        body = re.sub(r"^(TZ|CRON_TZ)=\S+\s+", "", schedule.strip())
        if not body.startswith("@") and len(body.split()) != 5:
            out.append(f'spec.schedule: Invalid value: "{schedule}": expected exactly 5 fields, found {len(body.split())}: '
                       f'[{schedule}]')
    return out


def validate(obj: dict, *, apply: bool) -> dict:
    """The object as the server stores it, or ApiError 422. ``apply``: strict (unknown fields are refused)."""
    obj = copy.deepcopy(obj)
    dummy, problems = k8s_schemas.check_object(obj)
    unknown, invalid = [], []
    for path, message, _validator in problems:
        match = _UNKNOWN.search(message)
        if match:
            for name in re.findall(r"'([^']*)'", match.group(1)):
                unknown.append((_parse_json_path(path), name))
        else:
            invalid.append(f"{path}: {message}")
    invalid.extend(_extra_checks(obj))
    kind, name = obj.get("kind", "?"), (obj.get("metadata") or {}).get("name", "")
    if apply and unknown:
        message = ", ".join(f"{_path_text(path + (key,))}: field not declared in schema" for path, key in unknown)
        raise ApiError(422, "Invalid", f"failed to create typed patch object ({kind} {name}): {message}")
    if invalid:
        raise ApiError(422, "Invalid", f'{kind} "{name}" is invalid: [' + ", ".join(invalid) + "]",
                       {"name": name, "kind": kind, "causes": [{"message": m} for m in invalid]})
    for path, key in unknown:  # create/update/patch: dropped, as the server prunes them
        _remove_at(obj, path, key)
    if obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1" and "stringData" in obj:
        # stringData is write-only: the server merges it into data (its keys win) and stores no stringData
        obj["data"] = dict(obj.get("data") or {}, **{k: base64.b64encode(str(v).encode()).decode() for k, v in (obj.pop("stringData") or {}).items()})
    return obj


# --------------------------------------------------------------------------------------------------------------------
# The server


class FakeKubernetes:
    def __init__(self):
        self.objects: dict = {}  # (resource, namespace or "", name) -> object
        self.requests: list = []
        self.stuck = False  # no schedulable node: pods stay Pending (Unschedulable)
        self.no_storage_class = False  # PVCs stay Pending, pods using them are not scheduled
        self.unpullable: set = set()  # images the kubelet cannot pull: their pods wait in ImagePullBackOff
        self.allowed: dict = {}  # (group, resource, verb) -> bool for access reviews; missing means allowed
        self.logs: dict = {}  # (namespace, pod, container, previous) -> text the kubelet holds (a test's input)
        # Jobs, KServe (the section "Jobs, pod logs, pod garbage collection, KServe" below)
        self.pod_logs: dict = {}  # (namespace, pod name prefix) -> what the pod's container prints
        self.pod_exits: dict = {}  # (namespace, pod name prefix) -> exit code of a Job pod's container (default 0)
        self.gc_finished_pods = False  # the pod garbage collector removes pods that ended (Succeeded or Failed)
        self.kserve = False  # a KServe controller reports InferenceServices Ready
        self.gpus = None  # the node's allocatable nvidia.com/gpu; None: GPU requests are not checked
        # The kubelet's side (tests/support/fake_kubelet.py): how a command runs "in" a container, for pods/exec
        # ({(namespace, pod or owner name, container or None): fn(command, stdin, env) -> (stdout, stderr, exit code)}),
        # and the usage metrics-server reports ({(namespace, pod): {container: {"cpu", "memory"}}}; None: no metrics API).
        self.exec_runners: dict = {}
        self.pod_usage: dict | None = None
        self._stopping = threading.Event()
        self._owners: dict = {}  # object key -> [{"manager", "operation", "subresource", "apiVersion", "paths", "time"}]
        self._kinds: dict = {}  # object key -> group/version it was written with
        self._rv = itertools.count(1000)
        self._uid = itertools.count(1)
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # ---------------------------------------------------------------- public helpers

    def start(self):
        served()
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def names(self, resource: str, namespace: str) -> list:
        return sorted(n for (r, ns, n) in self.objects if r == resource and ns == (namespace or ""))

    def kubeconfig(self) -> dict:
        return {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "users": [{"name": "fake", "user": {"token": "fake-token"}}]}

    def add(self, obj: dict, manager: str = "kubectl-create") -> dict:
        """Create an object as another client would (validated; a Namespace gets its controllers' objects)."""
        gv, kind = obj["apiVersion"], obj["kind"]
        plural = next((p for (g, p), (k, *_rest) in served().items() if g == gv and k == kind), None)
        if plural is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({gv} {kind})")
        with self._lock:
            namespace = (obj.get("metadata") or {}).get("namespace", "") if served()[(gv, plural)][1] else ""
            created = self._create(gv, plural, namespace, obj, manager, dry_run=False)
            self.reconcile()
            return created

    def set_status(self, resource: str, namespace: str, name: str, status: dict, manager: str = "controller") -> None:
        """Write an object's status through the status subresource, as its controller does (KServe for an
        InferenceService); an apply of the spec keeps it."""
        with self._lock:
            key = (resource, namespace or "", name)
            if key not in self.objects:
                raise ApiError(404, "NotFound", f'{resource} "{name}" not found')
            new = copy.deepcopy(self.objects[key])
            new["status"] = copy.deepcopy(status)
            gv = self._kinds.get(key, new["apiVersion"])
            self._update(gv, resource, namespace or "", name, new, manager, dry_run=False, subresource="status")
            self.reconcile()

    def delete(self, resource: str, namespace: str, name: str, propagation: str = "Background") -> None:
        """Delete an object as another client would (finalizers and controllers apply)."""
        with self._lock:
            self._delete((resource, namespace or "", name), propagation)
            self.reconcile()

    def managers(self, resource: str, namespace: str, name: str) -> dict:
        """{manager: sorted dotted paths} of one object."""
        entries = self._owners.get((resource, namespace or "", name), [])
        return {e["manager"] + ("" if e["operation"] == "Apply" else f" ({e['operation']})"): sorted(_path_text(p) for p in e["paths"])
                for e in entries}

    # ---------------------------------------------------------------- storage

    def _render(self, key) -> dict:
        obj = copy.deepcopy(self.objects[key])
        entries = self._owners.get(key, [])
        if entries:
            obj["metadata"]["managedFields"] = [
                dict({"manager": e["manager"], "operation": e["operation"], "apiVersion": e["apiVersion"], "time": e["time"],
                      "fieldsType": "FieldsV1", "fieldsV1": _fields_v1(e["paths"])},
                     **({"subresource": e["subresource"]} if e["subresource"] else {}))
                for e in entries if e["paths"]]
        return obj

    def _store(self, key, obj, before=None, before_owners=None):
        """Keep obj; a new resourceVersion only when it (or its field ownership) changed."""
        strip = ("resourceVersion",)
        old = {k: v for k, v in (before or {}).get("metadata", {}).items() if k not in strip}
        new = {k: v for k, v in obj["metadata"].items() if k not in strip}
        owners_changed = before_owners is not None and before_owners != [
            (e["manager"], e["operation"], e["subresource"], frozenset(e["paths"])) for e in self._owners.get(key, [])]
        if before is None or owners_changed or {**before, "metadata": old} != {**obj, "metadata": new}:
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[key] = obj

    def _owner_snapshot(self, key):
        return [(e["manager"], e["operation"], e["subresource"], frozenset(e["paths"])) for e in self._owners.get(key, [])]

    def _entry(self, key, manager, operation, subresource, gv):
        entries = self._owners.setdefault(key, [])
        for entry in entries:
            if entry["manager"] == manager and entry["operation"] == operation and entry["subresource"] == subresource:
                return entry
        entry = {"manager": manager, "operation": operation, "subresource": subresource, "apiVersion": gv, "paths": set(), "time": _now()}
        entries.append(entry)
        return entry

    def _record_update(self, key, manager, subresource, gv, before: dict, after: dict):
        """An Update operation: the manager takes every field it changed; other managers lose them."""
        old, new = _owned_paths(before or {}), _owned_paths(after)
        changed = {p for p in new if old.get(p, _MISSING) != new[p]}
        removed = {p for p in old if p not in new}
        if not changed and not removed:
            return
        for entry in self._owners.get(key, []):
            if entry["paths"] & (changed | removed):
                entry["paths"] -= changed | removed
                entry["time"] = _now()
        if changed:
            entry = self._entry(key, manager, "Update", subresource, gv)
            entry["paths"] |= changed
            entry["time"] = _now()
        self._owners[key] = [e for e in self._owners.get(key, []) if e["paths"]]

    def _namespace_check(self, namespace: str, creating: bool):
        if not namespace:
            return
        ns = self.objects.get(("namespaces", "", namespace))
        if ns is None:
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                           {"name": namespace, "kind": "namespaces"})
        if creating and ns["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden", f"unable to create new content in namespace {namespace} because it is being terminated")

    def _new_meta(self, obj, namespace, name, gv):
        meta = obj.setdefault("metadata", {})
        for key in _SERVER_META:
            meta.pop(key, None)
        meta["name"] = name
        if namespace:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        meta.update(uid=f"00000000-0000-4000-8000-{next(self._uid):012d}", creationTimestamp=_now(), generation=1)
        obj["apiVersion"] = gv

    def _create(self, gv, plural, namespace, body, manager, *, dry_run, apply_paths=None):
        kind = served()[(gv, plural)][0]
        if body.get("kind") not in (None, kind) or body.get("apiVersion") not in (None, gv):
            raise ApiError(400, "BadRequest", f"the API version in the data ({body.get('apiVersion')}) does not match the "
                                              f"expected API version ({gv}) or kind ({body.get('kind')} != {kind})")
        body = dict(body, apiVersion=gv, kind=kind)
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + hashlib.sha256(str(next(self._uid)).encode()).hexdigest()[:5]
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", f"{kind} is invalid: metadata.name: Required value: name or generateName is required")
        if meta.get("namespace") not in (None, namespace) and namespace:
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
        self._namespace_check(namespace, creating=True)
        key = (plural, namespace, name)
        if plural == "pods" and self._pod_security(namespace, body.get("spec") or {}):
            raise ApiError(403, "Forbidden", f'pods "{name}" is forbidden: ' + self._pod_security(namespace, body.get("spec") or {}))
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{plural} "{name}" already exists', {"name": name, "kind": plural})
        if "status" in served()[(gv, plural)][2]:
            body.pop("status", None)
        obj = validate(body, apply=apply_paths is not None)
        if dry_run:
            self._new_meta(obj, namespace, name, gv)
            return obj
        self._new_meta(obj, namespace, name, gv)
        if plural == "persistentvolumeclaims":
            obj["metadata"]["finalizers"] = sorted({*obj["metadata"].get("finalizers", []), "kubernetes.io/pvc-protection"})
            obj["status"] = {"phase": "Pending"}
        if plural == "jobs":
            _job_defaults(obj)
        if plural == "namespaces":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        self._kinds[key] = gv
        if apply_paths is not None:
            entry = self._entry(key, manager, "Apply", None, gv)
            entry["paths"] = set(apply_paths)
        else:
            self._owners[key] = []
            self._record_update(key, manager, None, gv, {}, obj)
        if plural == "routes":
            self._route_host(obj)
        self._store(key, obj)
        return self._render(key)

    def _route_host(self, route) -> None:
        """OpenShift's route host allocation: a Route created without ``spec.host`` gets ``<name>-<namespace>.<ingress
        domain>`` (the cluster's ``ingresses.config.openshift.io/cluster``), set by the server: no manager owns it, so a
        later apply without a host keeps it."""
        domain = ((self.objects.get(("ingresses", "", "cluster")) or {}).get("spec") or {}).get("domain")
        spec = route.setdefault("spec", {})
        if domain and not spec.get("host"):
            spec["host"] = f"{route['metadata']['name']}-{route['metadata']['namespace']}.{domain}"

    def _update(self, gv, plural, namespace, name, new_obj, manager, *, dry_run, subresource=None):
        key = (plural, namespace, name)
        before = self.objects[key]
        kind, dummy, subs = served()[(gv, plural)]
        new_obj = dict(new_obj, apiVersion=gv, kind=kind)
        if "status" in subs and subresource != "status":
            new_obj["status"] = copy.deepcopy(before.get("status"))
            if new_obj["status"] is None:
                new_obj.pop("status")
        meta = new_obj.setdefault("metadata", {})
        for field in _SERVER_META:
            if field in before["metadata"]:
                meta[field] = copy.deepcopy(before["metadata"][field])
            else:
                meta.pop(field, None)
        meta["name"] = name
        meta.pop("managedFields", None)
        if namespace:
            meta["namespace"] = namespace
        if plural == "persistentvolumeclaims" and "kubernetes.io/pvc-protection" in before["metadata"].get("finalizers", []) \
                and not before["metadata"].get("deletionTimestamp"):
            meta["finalizers"] = sorted({*meta.get("finalizers", []), "kubernetes.io/pvc-protection"})
        obj = validate(new_obj, apply=False)
        if _spec_of(obj) != _spec_of(before):
            obj["metadata"]["generation"] = before["metadata"].get("generation", 1) + 1
        if dry_run:
            return obj
        snapshot = self._owner_snapshot(key)
        self._record_update(key, manager, subresource, gv, before, obj)
        self._store(key, obj, before, snapshot)
        self._after_update(key)
        return self._render(key)

    def _apply(self, gv, plural, namespace, name, config, manager, force, *, dry_run):
        if not manager:
            raise ApiError(400, "BadRequest", "PATCH with apply-patch requires a fieldManager query parameter")
        kind = served()[(gv, plural)][0]
        if config.get("kind") != kind or config.get("apiVersion") != gv:
            raise ApiError(400, "BadRequest", f"apply patch must name apiVersion {gv} and kind {kind}")
        if (config.get("metadata") or {}).get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if "status" in served()[(gv, plural)][2]:
            config = {k: v for k, v in config.items() if k != "status"}
        key = (plural, namespace, name)
        # strict: an undeclared field is refused before anything else
        strict = copy.deepcopy(config)
        strict.setdefault("metadata", {})["name"] = name
        if key not in self.objects:
            self._namespace_check(namespace, creating=True)
            return self._create(gv, plural, namespace, strict, manager, dry_run=dry_run, apply_paths=_owned_paths(strict))
        live = self.objects[key]
        applied = _owned_paths(strict)
        entries = self._owners.get(key, [])
        conflicts = []
        for entry in entries:
            if entry["manager"] == manager and entry["operation"] == "Apply":
                continue
            for path in entry["paths"] & applied.keys():
                if _get(live, path) != applied[path]:
                    conflicts.append((entry, path))
        if conflicts and not force:
            text = "; ".join(f'conflict with "{e["manager"]}"{" using " + e["apiVersion"] if e["operation"] == "Update" else ""}: '
                             f'{_path_text(p)}' for e, p in conflicts)
            raise ApiError(409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s): {text}",
                           {"causes": [{"reason": "FieldManagerConflict", "message": f'conflict with "{e["manager"]}"',
                                        "field": _path_text(p)} for e, p in conflicts]})
        mine = next((e for e in entries if e["manager"] == manager and e["operation"] == "Apply"), None)
        others = set().union(*[e["paths"] for e in entries if e is not mine]) if entries else set()
        new = copy.deepcopy(live)
        for path in (mine["paths"] if mine else set()) - applied.keys() - others:
            _delete(new, path)
        for path, value in applied.items():
            _set(new, path, value)
        obj = validate(new, apply=True)
        if _spec_of(obj) != _spec_of(live):
            obj["metadata"]["generation"] = live["metadata"].get("generation", 1) + 1
        if dry_run:
            return obj
        snapshot = self._owner_snapshot(key)
        for entry, path in conflicts:
            entry["paths"].discard(path)
        entry = self._entry(key, manager, "Apply", None, gv)
        if entry["paths"] != set(applied):
            entry["paths"] = set(applied)
            entry["time"] = _now()
        self._owners[key] = [e for e in self._owners[key] if e["paths"] or e is entry]
        self._store(key, obj, live, snapshot)
        self._after_update(key)
        return self._render(key)

    def _after_update(self, key):
        obj = self.objects[key]
        if obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
            self._remove(key)

    # ---------------------------------------------------------------- deletion and controllers

    def _remove(self, key):
        self.objects.pop(key, None)
        self._owners.pop(key, None)
        self._kinds.pop(key, None)

    def _dependents(self, uid):
        return [k for k, o in self.objects.items() if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])]

    def _delete(self, key, propagation="Background", dry_run=False):
        obj = self.objects[key]
        meta = obj["metadata"]
        if dry_run:
            return copy.deepcopy(obj)
        if key[0] == "namespaces":
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = _now()
                obj["status"] = {"phase": "Terminating"}
                meta["resourceVersion"] = str(next(self._rv))
            return self._render(key)
        if propagation == "Orphan":
            for dep in self._dependents(meta["uid"]):
                refs = self.objects[dep]["metadata"]["ownerReferences"]
                self.objects[dep]["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != meta["uid"]]
        if propagation == "Foreground" and not meta.get("deletionTimestamp"):
            meta["finalizers"] = [*meta.get("finalizers", []), "foregroundDeletion"]
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = _now()
            meta["deletionGracePeriodSeconds"] = 0
            meta["resourceVersion"] = str(next(self._rv))
        rendered = self._render(key)
        if not meta.get("finalizers"):
            self._remove(key)
        return rendered

    def _pod_uses(self, pod, claim):
        return any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim for v in pod.get("spec", {}).get("volumes") or [])

    def reconcile(self):
        """One pass of the controllers: garbage collector, PVC protection, namespace, workloads, scheduler."""
        with self._lock:
            for dummy in range(20):  # until nothing moves
                if not self._reconcile_once():
                    break

    def _reconcile_once(self) -> bool:
        moved = False
        uids = {o["metadata"]["uid"] for o in self.objects.values()}
        for key in list(self.objects):
            obj = self.objects.get(key)
            if obj is None:
                continue
            meta = obj["metadata"]
            refs = meta.get("ownerReferences") or []
            # background garbage collection: dependents of a removed owner
            if refs and not meta.get("deletionTimestamp") and all(r.get("uid") not in uids for r in refs):
                self._delete(key, "Background")
                moved = True
                continue
            if not meta.get("deletionTimestamp"):
                continue
            finalizers = meta.get("finalizers") or []
            if "foregroundDeletion" in finalizers:
                deps = self._dependents(meta["uid"])
                for dep in deps:
                    if not self.objects[dep]["metadata"].get("deletionTimestamp"):
                        self._delete(dep, "Foreground")
                        moved = True
                if not self._dependents(meta["uid"]):
                    meta["finalizers"] = [f for f in finalizers if f != "foregroundDeletion"]
                    moved = True
            if key[0] == "persistentvolumeclaims" and "kubernetes.io/pvc-protection" in finalizers:
                users = [p for (r, ns, dummy), p in self.objects.items()
                         if r == "pods" and ns == key[1] and p["spec"].get("nodeName") and self._pod_uses(p, key[2])]
                if not users:
                    meta["finalizers"] = [f for f in meta["finalizers"] if f != "kubernetes.io/pvc-protection"]
                    moved = True
            if key[0] == "namespaces":
                inside = [k for k in self.objects if k[1] == key[2]]
                for k in inside:
                    if not self.objects[k]["metadata"].get("deletionTimestamp"):
                        self._delete(k, "Background")
                        moved = True
                if not [k for k in self.objects if k[1] == key[2]]:
                    self._remove(key)
                    moved = True
                continue
            if key in self.objects and not self.objects[key]["metadata"].get("finalizers"):
                self._remove(key)
                moved = True
        for key in [k for k in self.objects if k[0] == "namespaces"]:
            moved |= self._namespace_defaults(key[2])
        for key in [k for k in self.objects if k[0] in WORKLOADS]:
            if key in self.objects:
                moved |= self._job(key) if key[0] == "jobs" else self._workload(key)
        moved |= self._pod_gc()
        moved |= self._kserve()
        moved |= self._token_controller()
        moved |= self._scheduler()
        moved |= self._kubelet_container_statuses()
        return moved

    def _controller_add(self, gv, plural, namespace, obj) -> bool:
        key = (plural, namespace, obj["metadata"]["name"])
        if key in self.objects:
            return False
        kind = served()[(gv, plural)][0]
        obj = dict(obj, apiVersion=gv, kind=kind)
        self._new_meta(obj, namespace, obj["metadata"]["name"], gv)
        if plural == "persistentvolumeclaims":
            obj["metadata"]["finalizers"] = ["kubernetes.io/pvc-protection"]
            obj["status"] = {"phase": "Pending"}
        self._owners[key] = []
        self._record_update(key, CONTROLLER, None, gv, {}, obj)
        self._store(key, obj)
        return True

    def _namespace_defaults(self, namespace) -> bool:
        if self.objects[("namespaces", "", namespace)]["metadata"].get("deletionTimestamp"):
            return False
        moved = self._controller_add("v1", "configmaps", namespace, {"metadata": {"name": "kube-root-ca.crt"},
                                                                     "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}})
        return self._controller_add("v1", "serviceaccounts", namespace, {"metadata": {"name": "default"}}) or moved

    def _set_status(self, key, status) -> bool:
        obj = self.objects[key]
        if obj.get("status") == status:
            return False
        before = copy.deepcopy(obj)
        obj["status"] = status
        snapshot = self._owner_snapshot(key)
        entry = self._entry(key, CONTROLLER, "Update", "status", self._kinds.get(key, obj["apiVersion"]))
        entry["paths"] = {("status",)}
        self._store(key, obj, before, snapshot)
        return True

    def _workload(self, key) -> bool:
        plural, namespace, name = key
        obj = self.objects[key]
        meta, spec = obj["metadata"], obj.get("spec") or {}
        moved = False
        if meta.get("deletionTimestamp"):
            return False
        template = spec.get("template") or {}
        revision = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        owner = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": name, "uid": meta["uid"], "controller": True,
                 "blockOwnerDeletion": True}
        replicas = spec.get("replicas", 1)
        if plural == "statefulsets":
            wanted = [f"{name}-{i}" for i in range(replicas)]
        else:
            wanted = [f"{name}-{revision}-{hashlib.sha256((meta['uid'] + str(i)).encode()).hexdigest()[:5]}" for i in range(replicas)]
        pods = {k[2]: p for k, p in self.objects.items() if k[0] == "pods" and k[1] == namespace
                and any(r.get("uid") == meta["uid"] for r in p["metadata"].get("ownerReferences") or [])}
        for pod_name, pod in pods.items():
            stale = pod_name not in wanted or pod["metadata"].get("annotations", {}).get("fake/revision") != revision
            if stale and not pod["metadata"].get("deletionTimestamp"):
                self._delete(("pods", namespace, pod_name))
                moved = True
        for index, pod_name in enumerate(wanted):
            if ("pods", namespace, pod_name) in self.objects:
                continue
            pod_spec = copy.deepcopy(template.get("spec") or {})
            if plural == "statefulsets":
                for claim in spec.get("volumeClaimTemplates") or []:
                    claim_name = f"{claim['metadata']['name']}-{name}-{index}"
                    labels = dict((claim.get("metadata") or {}).get("labels") or {}, **((spec.get("selector") or {}).get("matchLabels") or {}))
                    moved |= self._controller_add("v1", "persistentvolumeclaims", namespace,
                                                  {"metadata": {"name": claim_name, "labels": labels}, "spec": copy.deepcopy(claim.get("spec") or {})})
                    pod_spec.setdefault("volumes", []).append({"name": claim["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim_name}})
            refused = self._pod_security(namespace, pod_spec)
            if refused:
                moved |= self._failed_create(key, obj, pod_name, revision, refused)
                continue
            pod = {"metadata": {"name": pod_name, "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                                "annotations": {"fake/revision": revision}, "ownerReferences": [owner]},
                   "spec": pod_spec, "status": {"phase": "Pending"}}
            moved |= self._controller_add("v1", "pods", namespace, pod)
        # status from the pods
        pods = [p for k, p in self.objects.items() if k[0] == "pods" and k[1] == namespace and k[2] in wanted
                and not p["metadata"].get("deletionTimestamp")]
        ready = sum(1 for p in pods if _pod_ready(p))
        generation = meta.get("generation", 1)
        if plural == "deployments":
            available = ready >= replicas
            status = {"observedGeneration": generation, "replicas": len(pods), "updatedReplicas": len(pods),
                      "conditions": [
                          {"type": "Available", "status": "True" if available else "False",
                           "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                           "message": "Deployment has minimum availability." if available else "Deployment does not have minimum availability."},
                          {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable" if available else "ReplicaSetUpdated",
                           "message": f'ReplicaSet "{name}-{revision}" ' + ("has successfully progressed." if available else "is progressing.")}]}
            if ready:
                status.update(readyReplicas=ready, availableReplicas=ready)
            if replicas - ready > 0:
                status["unavailableReplicas"] = replicas - ready
            # every count of a Deployment's status is omitempty: scaled to 0 it has none (kubernetes.core's waiter
            # then compares the absent availableReplicas and replicas)
            status = {k: v for k, v in status.items() if v != 0}
        else:  # statefulsets
            status = {"observedGeneration": generation, "replicas": len(pods), "currentReplicas": len(pods), "updatedReplicas": len(pods),
                      "currentRevision": f"{name}-{revision}", "updateRevision": f"{name}-{revision}", "collisionCount": 0,
                      "availableReplicas": ready}
            if ready:
                status["readyReplicas"] = ready
        moved |= self._set_status(key, status)
        return moved

    def _pod_security(self, namespace: str, pod_spec: dict) -> str:
        """The PodSecurity admission's refusal of a pod under the ``restricted`` profile its namespace enforces ("" when
        allowed); the checks of that profile the collection's pod templates meet."""
        ns = self.objects.get(("namespaces", "", namespace)) or {}
        if ((ns.get("metadata") or {}).get("labels") or {}).get("pod-security.kubernetes.io/enforce") != "restricted":
            return ""
        pod_sc = pod_spec.get("securityContext") or {}
        containers = (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or [])
        out = []
        bad = [c for c in containers if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False]
        if bad:
            out.append(f"allowPrivilegeEscalation != false ({_containers(bad)} must set securityContext.allowPrivilegeEscalation=false)")
        bad = [c for c in containers if "ALL" not in (((c.get("securityContext") or {}).get("capabilities") or {}).get("drop") or [])]
        if bad:
            out.append(f'unrestricted capabilities ({_containers(bad)} must set securityContext.capabilities.drop=["ALL"])')
        bad = [c for c in containers if (c.get("securityContext") or {}).get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True]
        if bad:
            out.append(f"runAsNonRoot != true (pod or {_containers(bad)} must set securityContext.runAsNonRoot=true)")
        bad = [c for c in containers if ((c.get("securityContext") or {}).get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
               not in ("RuntimeDefault", "Localhost")]
        if bad:
            out.append(f'seccompProfile (pod or {_containers(bad)} must set securityContext.seccompProfile.type to "RuntimeDefault" '
                       f'or "Localhost")')
        return f'violates PodSecurity "restricted:latest": {", ".join(out)}' if out else ""

    def _failed_create(self, key, obj, pod_name, revision, refused) -> bool:
        """The FailedCreate event of a workload controller whose pod the admission refused."""
        plural, namespace, name = key
        if plural == "deployments":  # the ReplicaSet controller creates a Deployment's pods
            source = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"uid": obj["metadata"]["uid"] + "-rs"}}
            return self._event(("replicasets", namespace, f"{name}-{revision}"), source, "Warning", "FailedCreate",
                               f"Error creating: pods \"{pod_name}\" is forbidden: {refused}", "replicaset-controller")
        if plural == "statefulsets":
            return self._event(key, obj, "Warning", "FailedCreate",
                               f"create Pod {pod_name} in StatefulSet {name} failed error: pods \"{pod_name}\" is forbidden: {refused}",
                               "statefulset-controller")
        return self._event(key, obj, "Warning", "FailedCreate", f"Error creating: pods \"{pod_name}\" is forbidden: {refused}", "job-controller")

    def _scheduler(self) -> bool:
        moved = False
        for key, claim in list(self.objects.items()):
            if key[0] == "persistentvolumeclaims" and not claim["metadata"].get("deletionTimestamp"):
                phase = "Pending" if self.no_storage_class else "Bound"
                if claim.get("status", {}).get("phase") != phase:
                    moved |= self._set_status(key, {"phase": phase})
                if phase == "Pending" and not (claim.get("spec") or {}).get("storageClassName"):
                    moved |= self._event(key, claim, "Normal", "FailedBinding",
                                         "no persistent volumes available for this claim and no storage class is set", "persistentvolume-controller")
        for key, pod in list(self.objects.items()):
            if key[0] != "pods" or pod["metadata"].get("deletionTimestamp"):
                continue
            unbound = [c for c in ((v.get("persistentVolumeClaim") or {}).get("claimName") for v in pod["spec"].get("volumes") or []) if c
                       and self.objects.get(("persistentvolumeclaims", key[1], c), {}).get("status", {}).get("phase") != "Bound"]
            no_gpu = not pod["spec"].get("nodeName") and self._gpus_short(pod)
            if self.stuck or unbound or no_gpu:
                reason = ("0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are "
                          "available: 1 Preemption is not helpful for scheduling." if unbound else
                          "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unschedulable: }. "
                          "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling." if self.stuck else
                          "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. "
                          "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")
                if pod["spec"].get("nodeName") or pod.get("status", {}).get("phase") != "Pending" or "conditions" not in pod.get("status", {}):
                    pod["spec"].pop("nodeName", None)
                    moved |= self._set_status(key, {"phase": "Pending", "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": reason}]})
                    moved |= self._event(key, pod, "Warning", "FailedScheduling", reason, "default-scheduler")
                continue
            images = [c.get("image") for c in pod["spec"].get("containers") or [] if c.get("image") in self.unpullable]
            if images:
                pod["spec"]["nodeName"] = NODE
                waiting = [{"name": c["name"], "image": c.get("image"), "imageID": "", "ready": False, "restartCount": 0, "started": False,
                            "state": {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{c.get("image")}"'}}}
                           for c in pod["spec"].get("containers") or [] if c.get("image") in self.unpullable]
                status = {"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
                    {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady",
                     "message": f"containers with unready status: [{' '.join(w['name'] for w in waiting)}]"},
                    {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                     "message": f"containers with unready status: [{' '.join(w['name'] for w in waiting)}]"}],
                    "containerStatuses": waiting}
                moved |= self._set_status(key, status)
                for image in images:
                    moved |= self._event(key, pod, "Warning", "Failed",
                                         f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and unpack image '
                                         f'"{image}": not found', "kubelet")
                    moved |= self._event(key, pod, "Normal", "BackOff", f'Back-off pulling image "{image}"', "kubelet")
                continue
            if not pod["spec"].get("nodeName"):
                pod["spec"]["nodeName"] = NODE
                job = any(r.get("kind") == "Job" for r in pod["metadata"].get("ownerReferences") or [])
                conditions = [{"type": "PodScheduled", "status": "True"}, {"type": "Initialized", "status": "True"},
                              {"type": "ContainersReady", "status": "False" if job else "True"},
                              {"type": "Ready", "status": "False" if job else "True"}]
                self._set_status(key, self._job_pod_end(key, conditions) if job else {"phase": "Running", "conditions": conditions})
                moved = True
        return moved

    def _gpus_short(self, pod) -> bool:
        """With ``gpus`` set (the node's allocatable ``nvidia.com/gpu``): the pod asks for more GPUs than the pods
        already on the node leave."""
        if self.gpus is None or not _gpus(pod):
            return False
        used = sum(_gpus(p) for k, p in self.objects.items() if k[0] == "pods" and p["spec"].get("nodeName")
                   and not p["metadata"].get("deletionTimestamp") and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))
        return used + _gpus(pod) > self.gpus

    def _event(self, key, obj, type_, reason, message, component) -> bool:
        name = f"{key[2]}.{hashlib.sha256((reason + message).encode()).hexdigest()[:16]}"
        return self._controller_add("v1", "events", key[1], {
            "metadata": {"name": name}, "type": type_, "reason": reason, "message": message, "count": 1,
            "source": {"component": component}, "firstTimestamp": _now(), "lastTimestamp": _now(),
            "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": key[2], "namespace": key[1],
                               "uid": obj["metadata"]["uid"]}})

    # ---------------------------------------------------------------- Jobs, pod logs, pod garbage collection, KServe

    def set_pod_log(self, namespace: str, pod_prefix: str, text: str) -> None:
        """What the container of the pods named ``pod_prefix...`` in ``namespace`` prints (their log)."""
        with self._lock:
            self.pod_logs[(namespace, pod_prefix)] = text

    def pod_log(self, namespace: str, pod_name: str):
        """The log of a pod (set_pod_log, longest matching prefix), or None when the test gave none."""
        found = [(len(prefix), text) for (ns, prefix), text in self.pod_logs.items() if ns == namespace and pod_name.startswith(prefix)]
        return max(found)[1] if found else None

    def set_pod_exit(self, namespace: str, pod_prefix: str, code: int) -> None:
        """The exit code of the container of the Job pods named ``pod_prefix...`` (0, the default: Succeeded; else Failed)."""
        with self._lock:
            self.pod_exits[(namespace, pod_prefix)] = code

    def _job(self, key) -> bool:
        """The Job controller: one pod at a time until one succeeds (Complete) or more than ``backoffLimit`` (default 6)
        failed (Failed, BackoffLimitExceeded); a pod the admission refuses leaves a FailedCreate event and no pod. A
        finished Job makes no pod again, also when its pods are gone."""
        plural, namespace, name = key
        obj = self.objects[key]
        meta, spec = obj["metadata"], obj.get("spec") or {}
        conditions = (obj.get("status") or {}).get("conditions") or []
        if meta.get("deletionTimestamp") or any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions):
            return False
        template = spec.get("template") or {}
        pods = sorted((p for k, p in self.objects.items() if k[0] == "pods" and k[1] == namespace and not p["metadata"].get("deletionTimestamp")
                       and any(r.get("uid") == meta["uid"] for r in p["metadata"].get("ownerReferences") or [])),
                      key=lambda p: p["metadata"]["annotations"].get("fake/index", ""))
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        succeeded, failed = phases.count("Succeeded"), phases.count("Failed")
        active = len(pods) - succeeded - failed
        moved = False
        if succeeded:
            message = "Reached expected number of succeeded pods"
            status = {"succeeded": succeeded, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}, "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": message},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": message}]}
        elif failed > spec.get("backoffLimit", 6):
            message = "Job has reached the specified backoff limit"
            status = {"failed": failed, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}, "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": message},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": message}]}
            moved |= self._event(key, obj, "Warning", "BackoffLimitExceeded", message, "job-controller")
        else:
            if not active:
                pod_name = f"{name}-{hashlib.sha256((meta['uid'] + str(len(pods))).encode()).hexdigest()[:5]}"
                pod_spec = copy.deepcopy(template.get("spec") or {})
                refused = self._pod_security(namespace, pod_spec)
                if refused:
                    moved |= self._failed_create(key, obj, pod_name, "", refused)
                else:
                    owner = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": name, "uid": meta["uid"], "controller": True,
                             "blockOwnerDeletion": True}
                    moved |= self._controller_add("v1", "pods", namespace, {
                        "metadata": {"name": pod_name, "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                                     "annotations": {"fake/index": f"{len(pods):04d}"}, "ownerReferences": [owner]},
                        "spec": pod_spec, "status": {"phase": "Pending"}})
                    active += 1
            status = {"active": active, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}}
            if failed:
                status["failed"] = failed
        return self._set_status(key, status) or moved

    def _job_pod_end(self, key, conditions) -> dict:
        """The status of a scheduled Job pod whose container ran to its end (exit code: set_pod_exit)."""
        found = [(len(prefix), code) for (ns, prefix), code in self.pod_exits.items() if ns == key[1] and key[2].startswith(prefix)]
        code = max(found)[1] if found else 0
        pod = self.objects[key]
        reason = "PodCompleted" if code == 0 else "PodFailed"
        return {"phase": "Succeeded" if code == 0 else "Failed",
                "conditions": [c if c["type"] not in ("ContainersReady", "Ready") else dict(c, reason=reason) for c in conditions],
                "containerStatuses": [{"name": c["name"], "image": c.get("image"), "imageID": "", "ready": False, "restartCount": 0, "started": False,
                                       "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}}
                                      for c in pod["spec"].get("containers") or []]}

    def _pod_gc(self) -> bool:
        """The pod garbage collector, when ``gc_finished_pods``: pods that ended are removed (as past
        --terminated-pod-gc-threshold, or when their node is gone)."""
        if not self.gc_finished_pods:
            return False
        ended = [k for k, p in self.objects.items() if k[0] == "pods" and not p["metadata"].get("deletionTimestamp")
                 and (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
        for key in ended:
            self._delete(key)
        return bool(ended)

    def _kserve(self) -> bool:
        """KServe in raw deployment mode, when ``kserve``: every InferenceService Ready, ``status.address.url`` its
        predictor Service (no port, no /v1), ``status.url`` a host of the domain template ``{name}-{namespace}.{domain}``
        under the cluster's ingress domain (the address when it is cluster-local). An InferenceService whose runtime
        (ServingRuntime in its namespace) exists also gets its predictor (``_kserve_predictor``), and is Ready only
        when that Deployment is Available."""
        if not self.kserve:
            return False
        ingress = self.objects.get(("ingresses", "", "cluster")) or {}
        domain = (ingress.get("spec") or {}).get("domain", "")
        moved = False
        for key in [k for k in self.objects if k[0] == "inferenceservices"]:
            isvc = self.objects[key]
            if isvc["metadata"].get("deletionTimestamp"):
                continue
            dummy, namespace, name = key
            moved |= self._kserve_predictor(key, isvc)
            address = f"http://{name}-predictor.{namespace}.svc.cluster.local"
            local = (isvc["metadata"].get("labels") or {}).get("networking.kserve.io/visibility") == "cluster-local"
            url = address if local or not domain else f"http://{name}-{namespace}.{domain}"
            conditions = [{"type": t, "status": "True"} for t in ("IngressReady", "PredictorReady", "Ready")]
            deployment = self.objects.get(("deployments", namespace, f"{name}-predictor"))
            available = next((c for c in ((deployment or {}).get("status") or {}).get("conditions") or [] if c["type"] == "Available"), None)
            if deployment is not None and (available or {}).get("status") != "True":
                not_ready = {"status": "False", "reason": (available or {}).get("reason", "MinimumReplicasUnavailable"),
                             "message": (available or {}).get("message", "Deployment does not have minimum availability.")}
                conditions = [conditions[0], dict(conditions[1], **not_ready), dict(conditions[2], **not_ready)]
            state = "Loaded" if conditions[2]["status"] == "True" else "Pending"
            status = {"observedGeneration": isvc["metadata"].get("generation", 1), "address": {"url": address}, "url": url, "conditions": conditions,
                      "modelStatus": {"states": {"activeModelState": state, "targetModelState": "Loaded"}}}
            moved |= self._set_status(key, status)
        return moved

    # ---------------------------------------------------------------- token controller (service account token Secrets)
    # kube-controller-manager's tokens controller for long-lived tokens: a Secret of type
    # kubernetes.io/service-account-token whose annotation kubernetes.io/service-account.name names a ServiceAccount of
    # its namespace gets data.token (a signed JWT naming the account), data["ca.crt"] and data.namespace, and the
    # annotation kubernetes.io/service-account.uid; one whose ServiceAccount does not exist (or has another uid than
    # the annotation says) is deleted. Its writes are the controller's Update of the Secret.

    def _token_controller(self) -> bool:
        moved = False
        for key in [k for k in self.objects if k[0] == "secrets"]:
            secret = self.objects.get(key)
            if secret is None or secret.get("type") != SA_TOKEN_TYPE or secret["metadata"].get("deletionTimestamp"):
                continue
            dummy, namespace, name = key
            annotations = secret["metadata"].get("annotations") or {}
            account = self.objects.get(("serviceaccounts", namespace, annotations.get(SA_NAME_ANNOTATION, "")))
            uid = annotations.get(SA_UID_ANNOTATION)
            if account is None or (uid and uid != account["metadata"]["uid"]):
                self._delete(key)
                moved = True
                continue
            data = secret.get("data") or {}
            if data.get("token") and uid:
                continue
            before, snapshot = copy.deepcopy(secret), self._owner_snapshot(key)
            account_name, account_uid = account["metadata"]["name"], account["metadata"]["uid"]
            claims = {"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": namespace,
                      "kubernetes.io/serviceaccount/secret.name": name, "kubernetes.io/serviceaccount/service-account.name": account_name,
                      "kubernetes.io/serviceaccount/service-account.uid": account_uid, "sub": f"system:serviceaccount:{namespace}:{account_name}"}
            token = ".".join(_b64url(part) for part in (json.dumps({"alg": "RS256", "kid": "fake"}).encode(), json.dumps(claims).encode(),
                                                        hashlib.sha256(f"{namespace}/{name}/{account_uid}".encode()).digest() * 8))
            secret["data"] = dict(data, **{"token": _b64(token), "ca.crt": _b64(FAKE_CA), "namespace": _b64(namespace)})
            secret["metadata"]["annotations"] = dict(annotations, **{SA_UID_ANNOTATION: account_uid})
            self._record_update(key, CONTROLLER, None, self._kinds.get(key, "v1"), before, secret)
            self._store(key, secret, before, snapshot)
            moved = True
        return moved

    # ---- KServe's predictor (raw deployment mode, OpenShift AI's KServe) ----------------------------------------------
    # For an InferenceService whose ServingRuntime (spec.predictor.model.runtime, in its namespace) exists, KServe's
    # raw-deployment reconcilers create, owned by the InferenceService:
    # - Deployment <name>-predictor: labels (its own and its pods') the InferenceService's labels plus
    #   serving.kserve.io/inferenceservice=<name>, component=predictor and app=isvc.<name>-predictor (its selector);
    #   replicas spec.predictor.minReplicas (default 1); one container kserve-container: the runtime's first container
    #   with {{.Name}} in its args replaced by <name>, the predictor's model args appended and the model's resources;
    #   the predictor's tolerations and nodeSelector, the runtime's volumes;
    # - Service <name>-predictor: the same labels, selector app=isvc.<name>-predictor, one port 80 named as the
    #   container's first port or "http" when it has no name, to that container port (the predictor Service's port 80
    #   maps to container port 8080: ../shared/reference/kserve-serving.md), annotation
    #   service.beta.openshift.io/serving-cert-secret-name=<name>-predictor-serving-cert.
    # Without its runtime KServe creates nothing (the InferenceService keeps the status above).

    def _kserve_predictor(self, key, isvc) -> bool:
        dummy, namespace, name = key
        predictor = (isvc.get("spec") or {}).get("predictor") or {}
        model = predictor.get("model") or {}
        runtime = self.objects.get(("servingruntimes", namespace, model.get("runtime") or ""))
        if runtime is None or not ((runtime.get("spec") or {}).get("containers")):
            return False
        component = f"{name}-predictor"
        labels = dict(isvc["metadata"].get("labels") or {})
        labels.update({"serving.kserve.io/inferenceservice": name, "component": "predictor", "app": f"isvc.{component}"})
        owner = {"apiVersion": isvc["apiVersion"], "kind": isvc["kind"], "name": name, "uid": isvc["metadata"]["uid"], "controller": True,
                 "blockOwnerDeletion": True}
        container = copy.deepcopy(runtime["spec"]["containers"][0])
        container["name"] = "kserve-container"
        container["args"] = [a.replace("{{.Name}}", name) for a in container.get("args") or []] + list(model.get("args") or [])
        if model.get("resources"):
            container["resources"] = copy.deepcopy(model["resources"])
        pod_spec = {"containers": [container]}
        for field in ("tolerations", "nodeSelector"):
            if predictor.get(field):
                pod_spec[field] = copy.deepcopy(predictor[field])
        if runtime["spec"].get("volumes"):
            pod_spec["volumes"] = copy.deepcopy(runtime["spec"]["volumes"])
        meta = {"name": component, "labels": labels, "ownerReferences": [owner]}
        moved = self._controller_add("apps/v1", "deployments", namespace, {
            "metadata": copy.deepcopy(meta),
            "spec": {"replicas": predictor.get("minReplicas", 1), "selector": {"matchLabels": {"app": f"isvc.{component}"}},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec}}})
        first = (container.get("ports") or [{}])[0]
        port = {"name": first.get("name") or "http", "port": 80, "protocol": first.get("protocol", "TCP"),
                "targetPort": first.get("containerPort", 8080)}
        return self._controller_add("v1", "services", namespace, {
            "metadata": dict(copy.deepcopy(meta), annotations={"service.beta.openshift.io/serving-cert-secret-name": f"{component}-serving-cert"}),
            "spec": {"type": "ClusterIP", "selector": {"app": f"isvc.{component}"}, "ports": [port]}}) or moved

    # ---------------------------------------------------------------- HTTP

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body):
                text = isinstance(body, PlainText)
                data = body.encode() if text else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self):
                url = urlsplit(self.path)
                parts = [p for p in url.path.split("/") if p]
                if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods" and parts[6] == "exec":
                    return fake._exec(self, parts[3], parts[5], url.query)
                if parts == ["openapi", "v2"] and self.command == "GET":
                    # The OpenAPI v2 document, in the protobuf kubectl asks for (``kubectl edit``/``--validate`` read it):
                    # ``swagger: "2.0"`` and no definitions, so kubectl validates no kind against it (a real server lists every kind).
                    self.send_response(200)
                    self.send_header("Content-Type", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
                    self.send_header("Content-Length", str(len(OPENAPI_V2_PROTOBUF)))
                    self.end_headers()
                    return self.wfile.write(OPENAPI_V2_PROTOBUF)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                try:
                    body = (yaml.load(raw, Loader=_LOADER) if content_type == "application/apply-patch+yaml" else json.loads(raw)) if raw else None
                except (ValueError, yaml.YAMLError) as exc:
                    return self._send(400, ApiError(400, "BadRequest", f"the body of the request could not be decoded: {exc}").status())
                with fake._lock:
                    fake.record(self, query, content_type, body)
                    try:
                        fake.reconcile()
                        status, answer = fake.serve(self.command, parts, query, content_type, body, self.headers.get("User-Agent", ""),
                                                    self.headers.get("Accept", ""))
                    except ApiError as exc:
                        status, answer = exc.code, exc.status()
                if status == 200 and self.command == "GET" and query.get("watch") in ("true", "1") and isinstance(answer, dict):
                    return fake._watch(self, parts, query, answer)
                return self._send(status, answer)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

        return Handler

    def serve(self, method, parts, query, content_type, body, user_agent, accept=""):  # noqa: C901 - one dispatcher
        if self.pod_usage is not None and parts[:2] == ["apis", "metrics.k8s.io"]:
            return self._metrics(method, parts[2:])
        if parts == ["version"]:
            # Every field a kube-apiserver 1.32 answers (the Python client's VersionInfo requires them all).
            return 200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "70d3cc986aa8221cd1dfb1121852688902d3bf53",
                         "gitTreeState": "clean", "buildDate": "2024-12-11T17:59:15Z", "goVersion": "go1.23.3", "compiler": "gc",
                         "platform": "linux/amd64"}
        if parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        groups = _group_versions()
        if parts == ["apis"]:
            by_group: dict = {}
            for gv in groups:
                if "/" in gv:
                    by_group.setdefault(gv.split("/")[0], []).append(gv)
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": gv, "version": gv.split("/")[1]} for gv in gvs],
                 "preferredVersion": {"groupVersion": gvs[0], "version": gvs[0].split("/")[1]}} for g, gvs in sorted(by_group.items())]
                + ([fake_kubelet.METRICS_GROUP] if self.pod_usage is not None else [])}
        if parts[:1] == ["api"] and len(parts) >= 2:
            gv, rest = parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        elif parts[:1] == ["apis"] and len(parts) == 2 and any(g.startswith(parts[1] + "/") for g in groups):
            gvs = sorted(g for g in groups if g.startswith(parts[1] + "/"))
            return 200, {"kind": "APIGroup", "apiVersion": "v1", "name": parts[1],
                         "versions": [{"groupVersion": g, "version": g.split("/")[1]} for g in gvs],
                         "preferredVersion": {"groupVersion": gvs[0], "version": gvs[0].split("/")[1]}}
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if gv not in groups:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            resources = []
            for plural in sorted(groups[gv]):
                kind, namespaced, subs = served()[(gv, plural)]
                verbs = ["create"] if plural in VIRTUAL else ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
                resources.append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind, "verbs": verbs,
                                  **({"shortNames": short_names()[(gv, plural)]} if (gv, plural) in short_names() else {})})
                for sub in subs:
                    resources.append({"name": f"{plural}/{sub}", "singularName": "", "namespaced": namespaced,
                                      "group": "autoscaling" if sub == "scale" else None, "version": "v1" if sub == "scale" else None,
                                      "kind": "Scale" if sub == "scale" else kind, "verbs": ["get", "patch", "update"]})
                if plural == "pods":
                    resources.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]})
                    resources.append({"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions", "verbs": ["create", "get"]})
            for resource in resources:
                for k in ("group", "version"):
                    if resource.get(k) is None:
                        resource.pop(k, None)
            return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        plural, name, subresource = rest[0], (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else None)
        if (gv, plural) not in served() or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        kind, namespaced, subs = served()[(gv, plural)]
        if namespaced != bool(namespace) and not (namespaced and name is None and method == "GET"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if plural == "pods" and subresource == "log" and method == "GET":
            return 200, self._pod_log(namespace, name, query)
        if subresource is not None and subresource not in subs:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        dry_run = query.get("dryRun") == "All"
        manager = query.get("fieldManager") or (user_agent.split("/")[0] if user_agent else "unknown")
        key = (plural, namespace, name)
        if plural in VIRTUAL:
            if method != "POST" or name:
                raise ApiError(405, "MethodNotAllowed", f'the server does not allow this method on the requested resource ({plural})')
            return 201, self._review(gv, kind, body or {})

        if method == "GET" and name is None:
            items = [self._render(k) for k in sorted(self.objects) if k[0] == plural and (not namespace or k[1] == namespace)
                     and labels_match(self.objects[k]["metadata"].get("labels") or {}, query.get("labelSelector", ""))
                     and fields_match(self.objects[k], query.get("fieldSelector", ""))]
            for item in items:
                item["apiVersion"] = gv
            listed = {"kind": f"{kind}List", "apiVersion": gv, "metadata": {"resourceVersion": str(next(self._rv))}, "items": items}
            return 200, (self._table(gv, plural, items, listed["metadata"]) if self._as_table(accept) else listed)
        if method == "POST" and name is None:
            return 201, self._create(gv, plural, namespace, body or {}, manager, dry_run=dry_run)
        if method == "DELETE" and name is None:  # deletecollection
            self._namespace_check(namespace, creating=False)
            selected = [k for k in sorted(self.objects) if k[0] == plural and k[1] == namespace
                        and labels_match(self.objects[k]["metadata"].get("labels") or {}, query.get("labelSelector", ""))]
            policy = (body or {}).get("propagationPolicy") or query.get("propagationPolicy") or "Background"
            return 200, {"kind": f"{kind}List", "apiVersion": gv, "metadata": {},
                         "items": [self._delete(k, policy, dry_run) for k in selected]}
        if name is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

        if method == "PATCH" and content_type == "application/apply-patch+yaml" and subresource is None:
            if namespace:
                self._namespace_check(namespace, creating=key not in self.objects)
            force = query.get("force") == "true"
            created = key not in self.objects
            answer = self._apply(gv, plural, namespace, name, body or {}, query.get("fieldManager"), force, dry_run=dry_run)
            return (201 if created else 200), answer
        if namespace:
            self._namespace_check(namespace, creating=False)
        if key not in self.objects:
            raise ApiError(404, "NotFound", f'{plural}{"." + gv.split("/")[0] if "/" in gv else ""} "{name}" not found',
                           {"name": name, "group": gv.split("/")[0] if "/" in gv else "", "kind": plural})
        live = self.objects[key]
        if method == "GET":
            if subresource == "scale":
                return 200, self._scale(key)
            answer = self._render(key)
            answer["apiVersion"] = gv
            return 200, (self._table(gv, plural, [answer], {"resourceVersion": answer["metadata"]["resourceVersion"]})
                         if self._as_table(accept) else answer)
        if method == "DELETE":
            policy = (body or {}).get("propagationPolicy") or query.get("propagationPolicy") or "Background"
            return 200, self._delete(key, policy, dry_run)
        if method in ("PUT", "PATCH"):
            if subresource == "scale":
                replicas = ((body or {}).get("spec") or {}).get("replicas")
                if not isinstance(replicas, int) or replicas < 0:
                    raise ApiError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: {replicas!r}')
                new = copy.deepcopy(live)
                new.setdefault("spec", {})["replicas"] = replicas
                self._update(gv, plural, namespace, name, new, manager, dry_run=dry_run, subresource="scale")
                return 200, self._scale(key)
            if method == "PUT":
                new = copy.deepcopy(body or {})
            elif content_type == "application/merge-patch+json" or content_type == "application/strategic-merge-patch+json":
                new = _merge_patch(copy.deepcopy(live), body or {})
            elif content_type == "application/json-patch+json":
                new = _json_patch(copy.deepcopy(live), body or [])
            else:
                raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types "
                                                            f"include: application/json-patch+json, application/merge-patch+json, "
                                                            f"application/apply-patch+yaml (got {content_type!r})")
            if subresource == "status":
                return 200, self._update(gv, plural, namespace, name, new, manager, dry_run=dry_run, subresource="status")
            return 200, self._update(gv, plural, namespace, name, new, manager, dry_run=dry_run)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _scale(self, key):
        obj = self.objects[key]
        selector = (obj.get("spec") or {}).get("selector") or {}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
                "spec": {"replicas": obj.get("spec", {}).get("replicas", 1)},
                "status": {"replicas": obj.get("status", {}).get("replicas", 0), "selector": selector_of_match_labels(selector.get("matchLabels"))}}

    def _review(self, gv, kind, body):
        spec = body.get("spec") or {}
        if kind == "TokenReview":
            return dict(body, apiVersion=gv, kind=kind, status={"authenticated": True, "user": {"username": "fake"}})
        attrs = spec.get("resourceAttributes") or {}
        if not attrs and not spec.get("nonResourceAttributes"):
            raise ApiError(422, "Invalid", f"{kind}.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: "
                                           "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified")
        allowed = self.allowed.get((attrs.get("group", ""), attrs.get("resource", ""), attrs.get("verb", "")), True)
        status = {"allowed": allowed} if allowed else {"allowed": False, "reason": "forbidden by the test's RBAC"}
        return {"kind": kind, "apiVersion": gv, "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}

    # ---------------------------------------------------------------- kubectl's requests: pod logs, watch, Table

    def _pod_log(self, namespace, name, query) -> PlainText:
        """GET pods/<name>/log: what the kubelet holds for the container (``.logs``, registered by a test), as the API
        server relays it: the container named or the pod's only one, ``tailLines``, ``previous``."""
        self._namespace_check(namespace, creating=False)
        pod = self.objects.get(("pods", namespace, name))
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
        containers = [c["name"] for c in pod["spec"].get("containers") or []]
        init = [c["name"] for c in pod["spec"].get("initContainers") or []]
        container = query.get("container", "")
        if not container:
            if len(containers) != 1:
                message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
                raise ApiError(400, "BadRequest", message + (f" or one of the init containers: [{' '.join(init)}]" if init else ""))
            container = containers[0]
        elif container not in containers + init:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        if not pod["spec"].get("nodeName"):
            return PlainText("")  # not scheduled: the API server has no kubelet to ask and answers with nothing
        waiting = [s for s in pod.get("status", {}).get("containerStatuses") or [] if s.get("name") == container and "waiting" in s.get("state", {})]
        if waiting and waiting[0]["state"]["waiting"].get("reason") in ("ImagePullBackOff", "ErrImagePull"):
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: trying and failing to pull image')
        previous = query.get("previous") in ("true", "1")
        text = self.logs.get((namespace, name, container, previous))
        if text is None and not previous:
            text = self.pod_log(namespace, name)  # set_pod_log: what a Job's pod printed, by name prefix
        if text is None:
            if previous:
                raise ApiError(400, "BadRequest", f'previous terminated container "{container}" in pod "{name}" not found')
            text = ""
        if query.get("tailLines"):
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(query["tailLines"]):]) if int(query["tailLines"]) else ""
        return PlainText(text)

    def _watch(self, handler, parts, query, listed) -> None:
        """A watch on a list (``?watch=true``): the events of the objects the same list selects, from the state at the
        watch's start, as a chunked stream of JSON lines, until ``timeoutSeconds``, the client leaves or the server stops."""
        if "items" not in listed:
            raise ApiError(405, "MethodNotAllowed", "watch of a single object: use a list with a fieldSelector")
        plain = {k: v for k, v in query.items() if k not in ("watch", "resourceVersion", "timeoutSeconds", "allowWatchBookmarks")}

        def state(items):
            return {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in items}

        with self._lock:
            seen = state(self.serve("GET", parts, plain, "", None, "")[1]["items"])
        handler.close_connection = True
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        end = datetime.datetime.now() + datetime.timedelta(seconds=float(query.get("timeoutSeconds") or 1800))
        try:
            while datetime.datetime.now() < end and not self._stopping.wait(0.05):
                with self._lock:
                    self.reconcile()
                    now = state(self.serve("GET", parts, plain, "", None, "")[1]["items"])
                events = [("DELETED", seen[k]) for k in seen if k not in now]
                events += [("ADDED" if k not in seen else "MODIFIED", o) for k, o in now.items()
                           if k not in seen or seen[k]["metadata"]["resourceVersion"] != o["metadata"]["resourceVersion"]]
                for type_, obj in events:
                    data = (json.dumps({"type": type_, "object": obj}) + "\n").encode()
                    handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                handler.wfile.flush()
                seen = now
            handler.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def record(self, handler, query, content_type, body) -> None:
        """One entry of ``requests``, as a test reads them (the caller holds the lock)."""
        self.requests.append({"method": handler.command, "path": urlsplit(handler.path).path, "query": query, "content_type": content_type,
                              "user_agent": handler.headers.get("User-Agent", ""), "body": body})

    def _exec(self, handler, namespace, name, raw_query) -> None:
        """pods/<name>/exec (tests/support/fake_kubelet.py): the pod and container checked as the API server and kubelet
        do, then the SPDY/3.1 upgrade and one command run by the test's runner for that container."""
        query = parse_qs(raw_query)
        command = query.get("command") or []

        def flag(key):
            return (query.get(key) or [""])[0] in ("true", "1")

        with self._lock:
            self.record(handler, query, "", None)
            try:
                self.reconcile()
                self._namespace_check(namespace, creating=False)
                pod = self.objects.get(("pods", namespace, name))
                if pod is None:
                    raise ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})
                containers = {c["name"]: c for c in pod["spec"].get("containers") or []}
                container = (query.get("container") or [""])[0]
                if not container:
                    if len(containers) != 1:
                        raise ApiError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]")
                    container = next(iter(containers))
                elif container not in containers:
                    raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
                if not command:
                    raise ApiError(400, "BadRequest", "you must specify at least 1 command")
                if not pod["spec"].get("nodeName"):
                    raise ApiError(400, "BadRequest", f"pod {name} does not have a host assigned")
                if pod.get("status", {}).get("phase") != "Running":
                    raise ApiError(400, "BadRequest", f'container {container} is not running in pod {name} (phase {pod.get("status", {}).get("phase")})')
                try:
                    env = fake_kubelet.container_env(self.objects, pod, containers[container])
                except fake_kubelet.EnvError as exc:
                    raise ApiError(500, "InternalError", f"the container could not have started: {exc}") from exc
                owners = [r["name"] for r in pod["metadata"].get("ownerReferences") or []]
                runner = next((self.exec_runners[k] for who in [name] + owners for k in ((namespace, who, container), (namespace, who, None))
                               if k in self.exec_runners), None)
            except ApiError as exc:
                handler.close_connection = True
                return handler._send(exc.code, exc.status())
        if (handler.headers.get("Upgrade") or "").lower() != "spdy/3.1":
            handler.close_connection = True
            return handler._send(400, ApiError(400, "BadRequest", "Upgrade request required").status())
        offered = [v.strip() for h in handler.headers.get_all("X-Stream-Protocol-Version") or [] for v in h.split(",")]
        if fake_kubelet.PROTOCOL not in offered:
            handler.close_connection = True
            return handler._send(403, ApiError(403, "Forbidden", f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                                                                 f"server supports [{fake_kubelet.PROTOCOL}]").status())
        handler.close_connection = True
        handler.send_response(101)
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Upgrade", "SPDY/3.1")
        handler.send_header("X-Stream-Protocol-Version", fake_kubelet.PROTOCOL)
        handler.end_headers()
        handler.wfile.flush()
        want = {"error"} | {s for s in ("stdin", "stdout") if flag(s)} | ({"stderr"} if flag("stderr") and not flag("tty") else set())

        def run(stdin):
            if runner is None:
                return b"", b"", {"metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
                                  "message": f"no command runner registered for container {container} of pod {namespace}/{name} "
                                             "(FakeKubernetes.exec_runners: the stand-in of the container runtime)"}
            out, err, code = runner(command, stdin, env)
            return out, err, fake_kubelet.exec_status(code, command)

        fake_kubelet.run_session(fake_kubelet.SpdySession(handler.rfile, handler.wfile), want, run)

    def _metrics(self, method, rest) -> tuple:
        """metrics.k8s.io/v1beta1 as metrics-server serves it: discovery and PodMetrics (fake_kubelet.py)."""
        if rest == []:
            return 200, dict(fake_kubelet.METRICS_GROUP, kind="APIGroup", apiVersion="v1")
        if rest == ["v1beta1"]:
            return 200, fake_kubelet.metrics_discovery()
        namespace = ""
        if rest[1:2] == ["namespaces"] and len(rest) >= 4:
            namespace, rest = rest[2], rest[:1] + rest[3:]
        if method != "GET" or rest[:2] != ["v1beta1", "pods"] or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        now = _now()
        items = [fake_kubelet.pod_metrics(self.objects[k], self.pod_usage[(k[1], k[2])], now) for k in sorted(self.objects)
                 if k[0] == "pods" and (not namespace or k[1] == namespace) and (k[1], k[2]) in self.pod_usage
                 and self.objects[k].get("status", {}).get("phase") == "Running"]
        if len(rest) == 3:
            found = [i for i in items if i["metadata"]["name"] == rest[2]]
            if not found:
                raise ApiError(404, "NotFound", f'podmetrics.metrics.k8s.io "{rest[2]}" not found')
            return 200, found[0]
        return 200, {"kind": "PodMetricsList", "apiVersion": fake_kubelet.METRICS_GV, "metadata": {}, "items": items}

    @staticmethod
    def _as_table(accept: str) -> bool:
        return "as=Table" in accept and "g=meta.k8s.io" in accept

    def _table(self, gv, plural, items, list_meta) -> dict:
        """The Table a real server answers ``kubectl get`` with, for the kinds whose columns are written here
        (Deployments, StatefulSets, Pods); other kinds are answered as a plain list, which kubectl prints as NAME/AGE."""
        columns = TABLE_COLUMNS.get(plural) or _crd_columns(gv, plural)
        if columns is None:
            return {"kind": f"{served()[(gv, plural)][0]}List", "apiVersion": gv, "metadata": list_meta, "items": items}
        rows = [{"cells": [cell(o) for dummy, dummy2, cell in columns],
                 "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}} for o in items]
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "rows": rows,
                "columnDefinitions": [{"name": n, "type": t, "format": "name" if n == "Name" else "", "description": "", "priority": 0}
                                      for n, t, dummy in columns]}

    def _kubelet_container_statuses(self) -> bool:
        """The kubelet's containerStatuses of a scheduled pod it runs (Running: started and ready; a Job's Succeeded pod:
        terminated, exit code 0, reason Completed), which ``kubectl get pods`` and custom columns read."""
        moved = False
        for key, pod in list(self.objects.items()):
            phase = pod.get("status", {}).get("phase")
            if key[0] != "pods" or phase not in ("Running", "Succeeded") or "containerStatuses" in pod["status"]:
                continue
            started = pod["metadata"].get("creationTimestamp") or _now()
            state = {"running": {"startedAt": started}} if phase == "Running" else {
                "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": started}}
            pod["status"]["containerStatuses"] = [
                {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": phase == "Running", "restartCount": 0,
                 "started": phase == "Running", "state": state, "lastState": {}} for c in pod["spec"].get("containers") or []]
            pod["metadata"]["resourceVersion"] = str(next(self._rv))
            moved = True
        return moved


def _age(obj) -> str:
    """The AGE column (duration.HumanDuration of the object's age)."""
    created = obj["metadata"].get("creationTimestamp")
    if not created:
        return "<unknown>"
    seconds = int((datetime.datetime.now(datetime.timezone.utc)
                   - datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)).total_seconds())
    minutes, hours = seconds // 60, seconds // 3600
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _pod_status_text(pod) -> str:
    status = pod.get("status") or {}
    for c in status.get("containerStatuses") or []:
        waiting = c.get("state", {}).get("waiting")
        if waiting and waiting.get("reason"):
            return waiting["reason"]
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    if status.get("phase") == "Succeeded":
        return "Completed"
    return status.get("phase") or "Unknown"


# The columns of the Table a real server prints (pkg/printers/internalversion), priority 0 (what kubectl shows without -o wide).
TABLE_COLUMNS = {
    "deployments": [
        ("Name", "string", lambda o: o["metadata"]["name"]),
        ("Ready", "string", lambda o: f"{o.get('status', {}).get('readyReplicas', 0)}/{o.get('spec', {}).get('replicas', 1)}"),
        ("Up-to-date", "integer", lambda o: o.get("status", {}).get("updatedReplicas", 0)),
        ("Available", "integer", lambda o: o.get("status", {}).get("availableReplicas", 0)),
        ("Age", "string", _age)],
    "statefulsets": [
        ("Name", "string", lambda o: o["metadata"]["name"]),
        ("Ready", "string", lambda o: f"{o.get('status', {}).get('readyReplicas', 0)}/{o.get('spec', {}).get('replicas', 1)}"),
        ("Age", "string", _age)],
    "pods": [
        ("Name", "string", lambda o: o["metadata"]["name"]),
        ("Ready", "string", lambda o: f"{sum(1 for c in o.get('status', {}).get('containerStatuses') or [] if c.get('ready'))}"
                                      f"/{len(o['spec'].get('containers') or [])}"),
        ("Status", "string", _pod_status_text),
        ("Restarts", "string", lambda o: str(sum(c.get("restartCount", 0) for c in o.get("status", {}).get("containerStatuses") or []))),
        ("Age", "string", _age)],
}


def _printer_path(obj, path: str):
    """The value of a CRD printer column's JSONPath (``.a.b``, ``[?(@.k=='v')]``, ``[?(@.k==true)]``), None when absent."""
    values = [obj]
    for name, key, want in re.findall(r"\.([\w-]+)|\[\?\(@\.([\w-]+)==([^)]*)\)\]", path):
        if name:
            values = [v[name] for v in values if isinstance(v, dict) and name in v]
        else:
            wanted = yaml.safe_load(want.replace("'", '"'))
            values = [item for v in values if isinstance(v, list) for item in v if isinstance(item, dict) and item.get(key) == wanted]
    return values[0] if values else None


@functools.cache
def _printer_columns(gv: str, plural: str):
    for path in sorted((k8s_schemas.shared_dir() / "crds").rglob("*.yaml")):
        doc = yaml.load(path.read_text(), Loader=_LOADER)
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition" or doc["spec"]["names"]["plural"] != plural:
            continue
        for version in doc["spec"]["versions"]:
            if f"{doc['spec']['group']}/{version['name']}" == gv and version.get("additionalPrinterColumns"):
                return tuple((c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"])
    return None


def _crd_columns(gv: str, plural: str):
    """A CRD's ``additionalPrinterColumns`` as Table columns (after Name; a date column shows the age)."""
    found = _printer_columns(gv, plural)
    if not found:
        return None
    return [("Name", "string", lambda o: o["metadata"]["name"])] + [
        (name, type_, _age if type_ == "date" and path == ".metadata.creationTimestamp" else functools.partial(_printer_path, path=path))
        for name, type_, path in found]


def _job_defaults(job: dict) -> None:
    """What the API server sets on a new Job without ``manualSelector``: a selector on its uid, and the labels naming
    the Job on its pod template."""
    spec = job.setdefault("spec", {})
    if spec.get("manualSelector"):
        return
    uid, name = job["metadata"]["uid"], job["metadata"]["name"]
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
    labels.update({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name, "controller-uid": uid, "job-name": name})


def _containers(bad) -> str:
    """'container "a"' or 'containers "a", "b"', as the PodSecurity admission names them."""
    return ("containers " if len(bad) > 1 else "container ") + ", ".join(f'"{c["name"]}"' for c in bad)


def _spec_of(obj) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _gpus(pod) -> int:
    """The ``nvidia.com/gpu`` a pod asks for (an extended resource: its limit is its request)."""
    total = 0
    for c in pod["spec"].get("containers") or []:
        res = c.get("resources") or {}
        total += int((res.get("requests") or {}).get("nvidia.com/gpu") or (res.get("limits") or {}).get("nvidia.com/gpu") or 0)
    return total


def _pod_ready(pod) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions") or [])


def _merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge_patch(target.get(key), value)
    return target


def _json_patch(target, operations):
    for op in operations:
        path = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = target
        for part in path[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = path[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif op["op"] == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                parent[last] = op["value"]
        elif op["op"] == "remove":
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                parent.pop(last, None)
        elif op["op"] == "test" and (parent[int(last)] if isinstance(parent, list) else parent.get(last)) != op["value"]:
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: test failed at {op['path']}")
    return target

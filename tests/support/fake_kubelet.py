"""The kubelet's side of the in-memory API server (tests/support/fake_k8s.py): ``pods/exec`` and the metrics API.

**pods/exec** is served as kube-apiserver relays it from the kubelet, in Kubernetes' remote command protocol
``v4.channel.k8s.io`` over SPDY/3.1 (what kubectl speaks): the client POSTs ``.../pods/<pod>/exec?command=..
&command=..&container=..&stdin=true&stdout=true&stderr=true`` with ``Connection: Upgrade``, ``Upgrade: SPDY/3.1`` and
the ``X-Stream-Protocol-Version`` values it speaks; the answer is ``101 Switching Protocols`` with the chosen protocol,
then the connection carries SPDY/3.1 frames (``SPDY_DICTIONARY`` below is the draft's header compression dictionary;
one zlib context per direction for the whole connection). The client opens one stream per ``streamtype`` header
(``error``, ``stdin``, ``stdout``, ``stderr``; ``resize`` with a TTY) with SYN_STREAM, each answered with SYN_REPLY;
stdin's DATA frames are read until its FIN, the command runs, stdout and stderr are written as DATA frames ended by
FIN, and the error stream carries v4's ``metav1.Status``: ``Success``, or ``Failure`` with reason ``NonZeroExitCode``
and the exit code as the cause ``ExitCode`` (kubectl exits with it). PING is answered, GOAWAY ends the connection.
Pod and container are checked as the API server and kubelet do (a pod that is not running, a container the pod does
not have: kubectl's own errors).

**What runs "in the container" is a stand-in**: no container runtime runs here. A test registers, per pod (its name or
its owner's, the Deployment/StatefulSet name) and container, a runner ``fn(command, stdin, env) -> (stdout, stderr,
exit code)`` in ``FakeKubernetes.exec_runners``; ``env`` is the container's environment from its pod spec (``value``
with ``$(VAR)`` references, ``valueFrom`` ``secretKeyRef``/``configMapKeyRef``/``fieldRef``, ``envFrom``), resolved from
the in-memory server's objects as the kubelet does. How the runner reaches the service the container would be (the
test's real PostgreSQL, Redis, proxy) is the runner's to say (``tests/playbooks/test_doc_commands_exec.py``). A pod
without a runner answers the exec with a Failure naming it.

**metrics.k8s.io/v1beta1** (what metrics-server adds to a cluster, for ``kubectl top``/``oc adm top``): served only
when a test sets ``FakeKubernetes.pod_usage`` (``{(namespace, pod): {container: {"cpu": "12m", "memory": "150Mi"}}}``,
the usage metrics-server would have scraped); ``PodMetrics`` of the pods that exist and have usage there.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib

# ---------------------------------------------------------------- SPDY/3 (draft 3, section 2.6.10.1: the dictionary)

_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding", "accept-language",
    "accept-ranges", "age", "allow", "authorization", "cache-control", "connection", "content-base", "content-encoding",
    "content-language", "content-length", "content-location", "content-md5", "content-range", "content-type", "date", "etag",
    "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
    "last-modified", "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive",
    "origin")
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden"
    "404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
SPDY_DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS) + _DICTIONARY_TAIL.encode()
assert len(SPDY_DICTIONARY) == 1423

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
PROTOCOL = "v4.channel.k8s.io"  # the remote command protocol spoken here (kubectl asks for it first)


class ProtocolError(Exception):
    pass


class SpdySession:
    """One SPDY/3.1 connection, server side: frames read from ``reader`` (a buffered file), written to ``writer``."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.inflate = zlib.decompressobj(zdict=SPDY_DICTIONARY)
        self.deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, SPDY_DICTIONARY)

    def _read(self, n: int) -> bytes:
        data = self.reader.read(n)
        if len(data) != n:
            raise EOFError("the client closed the connection")
        return data

    def read_frame(self) -> tuple:
        """("control", type, flags, payload) or ("data", stream id, flags, payload)."""
        first, second = struct.unpack(">II", self._read(8))
        flags, length = second >> 24, second & 0xFFFFFF
        payload = self._read(length) if length else b""
        if first & 0x80000000:
            version, type_ = (first >> 16) & 0x7FFF, first & 0xFFFF
            if version != 3:
                raise ProtocolError(f"SPDY version {version}: only 3 is spoken")
            return "control", type_, flags, payload
        return "data", first & 0x7FFFFFFF, flags, payload

    def headers(self, block: bytes) -> dict:
        raw = self.inflate.decompress(block)
        count, at, out = struct.unpack(">I", raw[:4])[0], 4, {}
        for dummy in range(count):
            (size,) = struct.unpack(">I", raw[at:at + 4])
            name = raw[at + 4:at + 4 + size].decode().lower()
            at += 4 + size
            (size,) = struct.unpack(">I", raw[at:at + 4])
            out[name] = raw[at + 4:at + 4 + size].decode().split("\0")
            at += 4 + size
        return out

    def _block(self, headers: dict) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            raw += struct.pack(">I", len(name)) + name.encode() + struct.pack(">I", len(value)) + value.encode()
        return self.deflate.compress(raw) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    def control(self, type_: int, flags: int, payload: bytes) -> None:
        self.writer.write(struct.pack(">HHI", 0x8000 | 3, type_, (flags << 24) | len(payload)) + payload)

    def reply(self, stream_id: int, headers: dict | None = None) -> None:
        self.control(SYN_REPLY, 0, struct.pack(">I", stream_id) + self._block(headers or {}))

    def data(self, stream_id: int, payload: bytes, fin: bool = False) -> None:
        chunks = [payload[i:i + 0xFFFF] for i in range(0, len(payload), 0xFFFF)] or [b""]
        for i, chunk in enumerate(chunks):
            last = fin and i == len(chunks) - 1
            self.writer.write(struct.pack(">II", stream_id, ((FLAG_FIN if last else 0) << 24) | len(chunk)) + chunk)

    def goaway(self, last_stream: int) -> None:
        self.control(GOAWAY, 0, struct.pack(">II", last_stream, 0))


def exec_status(code: int, command: list) -> dict:
    """The v4 error stream's answer, as the kubelet writes it."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command {command}, exit code {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def run_session(session: SpdySession, want: set, run) -> None:
    """Serve one exec: wait for the streams ``want`` (stream types), read stdin to its FIN, ``run(stdin) -> (stdout,
    stderr, status)``, write the answers, then keep answering PINGs until GOAWAY or the client leaves."""
    streams: dict = {}  # stream type -> id
    stdin, stdin_open, done, last = b"", "stdin" in want, False, 0
    try:
        while True:
            kind, what, flags, payload = session.read_frame()
            if kind == "control":
                if what == SYN_STREAM:
                    stream_id = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
                    last = max(last, stream_id)
                    headers = session.headers(payload[10:])
                    streams[(headers.get("streamtype") or [""])[0]] = stream_id
                    session.reply(stream_id)
                elif what == PING:
                    session.control(PING, 0, payload)
                elif what == GOAWAY:
                    return
                elif what in (HEADERS,):
                    session.headers(payload[4:])  # keeps the decompressor in step
                # SETTINGS, WINDOW_UPDATE, RST_STREAM: nothing to do for a stream of a few frames
            elif what == streams.get("stdin"):
                stdin += payload
                if flags & FLAG_FIN:
                    stdin_open = False
            if not done and want <= set(streams) and not stdin_open:
                out, err, status = run(stdin)
                if "stdout" in streams:
                    session.data(streams["stdout"], out, fin=True)
                if "stderr" in streams:
                    session.data(streams["stderr"], err, fin=True)
                session.data(streams["error"], json.dumps(status).encode(), fin=True)
                done = True
    except (EOFError, ConnectionError, OSError):
        return
    finally:
        try:
            session.goaway(last)
        except OSError:
            pass


# ---------------------------------------------------------------- the container's environment, as the kubelet makes it

class EnvError(Exception):
    pass


def _b64(value: str) -> str:
    return base64.b64decode(value).decode()


def container_env(objects: dict, pod: dict, container: dict) -> dict:
    """The environment the kubelet gives ``container`` of ``pod``: envFrom first, then env (later wins), values from
    the Secrets and ConfigMaps of the pod's namespace; a missing non-optional source is an error naming it."""
    namespace = pod["metadata"]["namespace"]
    env: dict = {}

    def source(kind: str, name: str, optional: bool) -> dict | None:
        obj = objects.get((kind, namespace, name))
        if obj is None and not optional:
            raise EnvError(f'{kind[:-1]} "{name}" not found (container {container["name"]} of pod {pod["metadata"]["name"]})')
        if obj is None:
            return None
        if kind == "secrets":
            return {k: _b64(v) for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})

    for item in container.get("envFrom") or []:
        for kind, ref in (("secrets", item.get("secretRef")), ("configmaps", item.get("configMapRef"))):
            if ref:
                values = source(kind, ref["name"], ref.get("optional", False)) or {}
                env.update({item.get("prefix", "") + k: v for k, v in values.items()})
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
            continue
        ref = item.get("valueFrom") or {}
        for kind, key_ref in (("secrets", ref.get("secretKeyRef")), ("configmaps", ref.get("configMapKeyRef"))):
            if key_ref:
                values = source(kind, key_ref["name"], key_ref.get("optional", False))
                if values is not None and key_ref["key"] in values:
                    env[item["name"]] = values[key_ref["key"]]
                elif not key_ref.get("optional", False):
                    raise EnvError(f'couldn\'t find key {key_ref["key"]} in {kind[:-1]} {namespace}/{key_ref["name"]}')
        if ref.get("fieldRef"):
            path = ref["fieldRef"]["fieldPath"]
            value: object = pod
            for part in path.split("."):
                value = value.get(part, "") if isinstance(value, dict) else ""
            env[item["name"]] = str(value)
    return env


# ---------------------------------------------------------------- metrics.k8s.io

METRICS_GV = "metrics.k8s.io/v1beta1"
# The API group as discovery lists it (in /apis and at /apis/metrics.k8s.io).
METRICS_GROUP = {"name": "metrics.k8s.io", "versions": [{"groupVersion": METRICS_GV, "version": "v1beta1"}],
                 "preferredVersion": {"groupVersion": METRICS_GV, "version": "v1beta1"}}


def metrics_discovery() -> dict:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": METRICS_GV, "resources": [
        {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]}]}


def pod_metrics(pod: dict, usage: dict, now: str) -> dict:
    return {"kind": "PodMetrics", "apiVersion": METRICS_GV,
            "metadata": {"name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"], "creationTimestamp": now,
                         "labels": pod["metadata"].get("labels") or {}},
            "timestamp": now, "window": "30s",
            "containers": [{"name": name, "usage": dict(values)} for name, values in usage.items()]}

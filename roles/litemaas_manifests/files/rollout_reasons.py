"""Why a rollout or a Job of the manifest pipeline (role rhpds.litemaas.litemaas_manifests) does not progress.

Reads JSON on stdin:
  {"workloads": [{"kind", "namespace", "name", "selector": {label: value}, "conditions": [...] (Jobs)}], "pods": [Pod],
   "events": [Event], "claims": [PersistentVolumeClaim]}
(the pods, events and claims of the workloads' namespaces, as the API server lists them; a Job's selector and
conditions as the server has them). For each workload, looks at its pods (found by its selector) and at the events
about it, its pods, its ReplicaSets and their claims, and reports what holds it: a pod the scheduler cannot place (no
schedulable node, an unbound PersistentVolumeClaim), a container waiting on an image that cannot be pulled or that
keeps crashing, a pod the admission refuses (FailedCreate, e.g. PodSecurity); for a Job also that it failed (its
Failed condition, e.g. BackoffLimitExceeded) and how its pods' containers ended. Prints one JSON line
{"reasons": {"Kind/namespace/name": ["...", ...]}, "failed": ["Job/namespace/name", ...]} naming only the workloads
held by such a reason; a workload that is merely slow has none.
"""

import json
import re
import sys

# Waiting reasons of a container that do not go away by waiting longer.
STUCK_WAITING = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CrashLoopBackOff",
                 "CreateContainerConfigError", "CreateContainerError", "RunContainerError")


def _matches(labels, selector):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _latest(events):
    """The most recent event of each (object, reason), newest last."""
    out = {}
    for event in events:
        obj = event.get("involvedObject") or {}
        key = (obj.get("kind"), obj.get("name"), event.get("reason"))
        stamp = event.get("lastTimestamp") or event.get("eventTime") or ""
        if key not in out or stamp >= (out[key].get("lastTimestamp") or out[key].get("eventTime") or ""):
            out[key] = event
    return out


def _owns(workload, obj):
    """Whether an event's object is the workload itself or (for a Deployment) one of its ReplicaSets."""
    if obj.get("kind") == workload["kind"] and obj.get("name") == workload["name"]:
        return True
    return (workload["kind"] == "Deployment" and obj.get("kind") == "ReplicaSet"
            and re.fullmatch(re.escape(workload["name"]) + r"-[a-z0-9]+", obj.get("name") or "") is not None)


def _claims_of(pod):
    return [v["persistentVolumeClaim"]["claimName"] for v in (pod.get("spec") or {}).get("volumes") or [] if v.get("persistentVolumeClaim")]


def reasons_of(workload, pods, events, claims):
    namespace = workload["namespace"]
    latest = _latest(e for e in events if (e.get("involvedObject") or {}).get("namespace", namespace) == namespace)
    claims = {c["metadata"]["name"]: c for c in claims if c["metadata"].get("namespace", namespace) == namespace}
    out = []
    for (kind, name, reason), event in sorted(latest.items(), key=lambda item: [str(x) for x in item[0]]):
        if reason == "FailedCreate" and _owns(workload, event["involvedObject"]):
            out.append(f"{kind} {name}: FailedCreate: {event.get('message', '')}")
    mine = [p for p in pods if p["metadata"].get("namespace", namespace) == namespace and not p["metadata"].get("deletionTimestamp")
            and _matches((p["metadata"].get("labels") or {}), workload["selector"])]
    for pod in sorted(mine, key=lambda p: p["metadata"]["name"]):
        name, status = pod["metadata"]["name"], pod.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                out.append(f"pod {name} is not scheduled: {condition.get('reason', '')}: {condition.get('message', '')}")
                for claim_name in _claims_of(pod):
                    claim = claims.get(claim_name)
                    phase = ((claim or {}).get("status") or {}).get("phase", "missing")
                    if phase != "Bound":
                        why = [e.get("message", "") for (k, n, r), e in latest.items() if k == "PersistentVolumeClaim" and n == claim_name]
                        out.append(f"PersistentVolumeClaim {claim_name} is {phase}" + (f": {'; '.join(why)}" if why else ""))
        for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_WAITING:
                out.append(f"pod {name} container {container.get('name')}: {waiting['reason']}: {waiting.get('message', '')}")
                failed = latest.get(("Pod", name, "Failed"))
                if failed:
                    out.append(f"pod {name}: {failed.get('message', '')}")
        if workload["kind"] == "Job" and status.get("phase") == "Failed":
            for container in status.get("containerStatuses") or []:
                ended = (container.get("state") or {}).get("terminated") or {}
                if ended:
                    out.append(f"pod {name} container {container.get('name')} exited with code {ended.get('exitCode')} ({ended.get('reason', '')})")
    failed = _failed(workload)
    if failed:
        out.insert(0, failed)
        out.append(f"its log: oc logs -n {namespace} job/{workload['name']}")
    return out


def _failed(workload):
    """A Job's Failed condition, as text ("" when it has not failed)."""
    for condition in workload.get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return f"failed: {condition.get('reason', '')}: {condition.get('message', '')}"
    return ""


def main():
    data = json.load(sys.stdin)
    found, failed = {}, []
    for workload in data.get("workloads") or []:
        reasons = reasons_of(workload, data.get("pods") or [], data.get("events") or [], data.get("claims") or [])
        name = f"{workload['kind']}/{workload['namespace']}/{workload['name']}"
        if reasons:
            found[name] = reasons
        if _failed(workload):
            failed.append(name)
    print(json.dumps({"reasons": found, "failed": failed}, sort_keys=True))


if __name__ == "__main__":
    main()

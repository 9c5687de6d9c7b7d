"""The in-memory API server behaves as the real kube-apiserver 1.32 did for the collection
(../shared/reference/kube-apiserver-facts.md), seen through the Python client kubernetes.core uses."""

from __future__ import annotations

import copy

import pytest
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ApiException

from tests.support import k8s_schemas
from tests.support.fake_k8s import VIRTUAL, FakeKubernetes, labels_match, served

NS = "apps"
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS, "labels": {"component": "gateway"}},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                           "containers": [{"name": "web", "image": "example/web:1"}],
                           "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                          "whenUnsatisfiable": "ScheduleAnyway",
                                                          "labelSelector": {"matchLabels": {"app": "web"}}}]}}}}


@pytest.fixture()
def fake():
    server = FakeKubernetes().start()
    yield server
    server.stop()


@pytest.fixture()
def api(fake):
    api_client = config.new_client_from_config_dict(fake.kubeconfig())
    yield DynamicClient(api_client)
    api_client.close()


def _ns(api, name=NS):
    api.resources.get(api_version="v1", kind="Namespace").create(body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def _apply(api, body, manager="rhpds.litemaas", force=True):
    resource = api.resources.get(api_version=body["apiVersion"], kind=body["kind"])
    return api.server_side_apply(resource, body=body, name=body["metadata"]["name"], namespace=body["metadata"].get("namespace"),
                                 field_manager=manager, force_conflicts=force).to_dict()


def _error(call) -> tuple:
    with pytest.raises(ApiException) as info:
        call()
    import json

    body = json.loads(info.value.body)
    return info.value.status, body["message"]


def test_every_served_kind_has_the_schema_its_server_uses():
    kinds = {(gv, kind) for (gv, plural), (kind, dummy, dummy2) in served().items() if plural not in VIRTUAL}
    assert not [k for k in kinds if not k8s_schemas.validators_for(*k)]
    for wanted in [("serving.kserve.io/v1beta1", "InferenceService"), ("serving.kserve.io/v1alpha1", "ServingRuntime"),
                   ("argoproj.io/v1alpha1", "Application"), ("route.openshift.io/v1", "Route"), ("oauth.openshift.io/v1", "OAuthClient"),
                   ("monitoring.coreos.com/v1", "ServiceMonitor"), ("batch/v1", "CronJob"), ("build.openshift.io/v1", "BuildConfig")]:
        assert wanted in kinds


def test_a_write_into_a_missing_namespace_is_404_and_a_namespace_gets_its_defaults(api, fake):
    status, message = _error(lambda: _apply(api, DEPLOYMENT))
    assert (status, message) == (404, 'namespaces "apps" not found')
    _ns(api)
    api.resources.get(api_version="v1", kind="Pod").get(namespace=NS)  # any request lets the controllers run
    assert fake.names("configmaps", NS) == ["kube-root-ca.crt"] and fake.names("serviceaccounts", NS) == ["default"]


def test_strict_apply_refuses_an_undeclared_field_and_create_drops_it(api, fake):
    _ns(api)
    bad = copy.deepcopy(DEPLOYMENT)
    bad["spec"]["bogus"] = 1
    status, message = _error(lambda: _apply(api, bad))
    assert status == 422 and message.endswith(".spec.bogus: field not declared in schema")
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "m", "namespace": NS},
               "spec": {"selector": {}, "endpoints": [{"port": "http"}], "bogus": True}}
    status, message = _error(lambda: _apply(api, monitor))
    assert status == 422 and message.endswith(".spec.bogus: field not declared in schema")
    created = api.resources.get(api_version="apps/v1", kind="Deployment").create(body=bad, namespace=NS).to_dict()
    assert "bogus" not in created["spec"] and created["spec"]["replicas"] == 2


def test_a_cronjob_schedule_needs_five_fields(api):
    _ns(api)
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "backup", "namespace": NS},
            "spec": {"schedule": "0", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "b", "image": "example/b:1"}]}}}}}}
    status, message = _error(lambda: _apply(api, cron))
    assert status == 422 and 'spec.schedule: Invalid value: "0": expected exactly 5 fields' in message
    cron["spec"]["schedule"] = "0 3 * * *"
    assert _apply(api, cron)["spec"]["schedule"] == "0 3 * * *"


def test_field_managers_scale_then_apply_takes_replicas_back(api, fake):
    _ns(api)
    _apply(api, DEPLOYMENT)
    first = api.resources.get(api_version="apps/v1", kind="Deployment").get(name="web", namespace=NS).to_dict()  # status written
    again = _apply(api, DEPLOYMENT)
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]  # no-op apply: nothing written
    assert ".spec.replicas" in fake.managers("deployments", NS, "web")["rhpds.litemaas"]
    # The Python client's scale subresource write is recorded under its User-Agent's product name.
    apps = client.AppsV1Api(api.client)
    apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 2}})
    assert fake.managers("deployments", NS, "web").get("rhpds.litemaas") and ".spec.replicas" in fake.managers("deployments", NS, "web")[
        "rhpds.litemaas"]  # same value: nothing changed, nothing taken
    apps.patch_namespaced_deployment_scale("web", NS, {"spec": {"replicas": 3}})
    managers = fake.managers("deployments", NS, "web")
    assert managers["OpenAPI-Generator (Update)"] == [".spec.replicas"] and ".spec.replicas" not in managers["rhpds.litemaas"]
    scaled = api.resources.get(api_version="apps/v1", kind="Deployment").get(name="web", namespace=NS).to_dict()
    # A non-forced apply of another value conflicts; a forced one takes the field back.
    status, message = _error(lambda: _apply(api, DEPLOYMENT, force=False))
    assert status == 409 and message == 'Apply failed with 1 conflict(s): conflict with "OpenAPI-Generator" using apps/v1: .spec.replicas'
    same = dict(DEPLOYMENT, spec=dict(DEPLOYMENT["spec"], replicas=3))
    back = _apply(api, same)
    assert back["spec"] == scaled["spec"] and back["metadata"]["resourceVersion"] != scaled["metadata"]["resourceVersion"]
    assert ".spec.replicas" in fake.managers("deployments", NS, "web")["rhpds.litemaas"]


def test_fields_dropped_from_an_applied_configuration_are_removed(api):
    _ns(api)
    _apply(api, DEPLOYMENT)
    plain = copy.deepcopy(DEPLOYMENT)
    del plain["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert "topology_spread_constraints" not in str(_apply(api, plain)["spec"]["template"]["spec"])
    assert "topologySpreadConstraints" not in _apply(api, plain)["spec"]["template"]["spec"]


def test_access_reviews_are_create_only_and_stored_nowhere(api, fake):
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"group": "oauth.openshift.io", "resource": "oauthclients", "verb": "create"}}}
    resource = api.resources.get(api_version="authorization.k8s.io/v1", kind="SelfSubjectAccessReview")
    assert resource.create(body=review).to_dict()["status"] == {"allowed": True}
    fake.allowed[("oauth.openshift.io", "oauthclients", "create")] = False
    assert resource.create(body=review).to_dict()["status"]["allowed"] is False
    assert not [k for k in fake.objects if k[0] == "selfsubjectaccessreviews"]
    status, dummy = _error(lambda: resource.get(name="x"))
    assert status == 405


@pytest.mark.parametrize(("selector", "expected"), [
    ("component in (gateway,cache)", ["cache", "gateway"]), ("component notin (gateway)", ["cache", "kube-root-ca.crt", "none"]),
    ("!component", ["kube-root-ca.crt", "none"]), ("component", ["cache", "gateway"]), ("component=gateway,tier!=x", ["gateway"])])
def test_set_based_label_selectors(api, selector, expected):
    _ns(api)
    cms = api.resources.get(api_version="v1", kind="ConfigMap")
    for name, labels in (("gateway", {"component": "gateway"}), ("cache", {"component": "cache"}), ("none", {})):
        cms.create(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}, namespace=NS)
    found = [o.metadata.name for o in cms.get(namespace=NS, label_selector=selector).items]
    assert sorted(found) == sorted(expected)
    assert labels_match({"a": "1"}, "a in (1, 2)") and not labels_match({}, "a in (1)")


def _job_with_claim(api):
    _ns(api)
    api.resources.get(api_version="v1", kind="PersistentVolumeClaim").create(namespace=NS, body={
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "backups"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    _apply(api, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "dump", "namespace": NS}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "d", "image": "example/d:1", "volumeMounts": [{"name": "b", "mountPath": "/b"}]}],
        "volumes": [{"name": "b", "persistentVolumeClaim": {"claimName": "backups"}}]}}}})


def test_a_pvc_stays_terminating_while_a_succeeded_job_pod_uses_it(api, fake):
    _job_with_claim(api)
    job = api.resources.get(api_version="batch/v1", kind="Job").get(name="dump", namespace=NS).to_dict()
    assert [(c["type"], c["status"]) for c in job["status"]["conditions"]] == [("SuccessCriteriaMet", "True"), ("Complete", "True")]
    pods = api.resources.get(api_version="v1", kind="Pod").get(namespace=NS).to_dict()["items"]
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]
    pvcs = api.resources.get(api_version="v1", kind="PersistentVolumeClaim")
    pvcs.delete(name="backups", namespace=NS)
    held = pvcs.get(name="backups", namespace=NS).to_dict()
    assert held["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"] and held["metadata"]["deletionTimestamp"]
    # Foreground: the Job stays (foregroundDeletion) until its pod is gone; then the Job goes, then the claim.
    jobs = api.resources.get(api_version="batch/v1", kind="Job")
    answer = jobs.delete(name="dump", namespace=NS, body={"propagationPolicy": "Foreground"}).to_dict()
    assert answer["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert fake.names("jobs", NS) == ["dump"]
    api.resources.get(api_version="v1", kind="Pod").get(namespace=NS)
    assert fake.names("jobs", NS) == [] and fake.names("pods", NS) == [] and fake.names("persistentvolumeclaims", NS) == []


def test_deleting_a_namespace_removes_everything_in_it(api, fake):
    _job_with_claim(api)
    _apply(api, DEPLOYMENT)
    api.resources.get(api_version="v1", kind="Namespace").delete(name=NS)
    status, message = _error(lambda: _apply(api, dict(DEPLOYMENT, metadata=dict(DEPLOYMENT["metadata"], name="late"))))
    assert status in (403, 404)
    api.resources.get(api_version="v1", kind="Namespace").get()
    assert not [k for k in fake.objects if k[1] == NS] and fake.names("namespaces", "") == []


def test_a_stuck_rollout_shows_its_reason_on_pods_and_events(api, fake):
    _ns(api)
    fake.stuck = True
    _apply(api, DEPLOYMENT)
    deployment = api.resources.get(api_version="apps/v1", kind="Deployment").get(name="web", namespace=NS).to_dict()
    assert "readyReplicas" not in deployment["status"] and deployment["status"]["unavailableReplicas"] == 2
    pods = api.resources.get(api_version="v1", kind="Pod").get(namespace=NS).to_dict()["items"]
    assert [c["reason"] for p in pods for c in p["status"]["conditions"]] == ["Unschedulable", "Unschedulable"]
    events = api.resources.get(api_version="v1", kind="Event").get(namespace=NS, field_selector="reason=FailedScheduling").to_dict()["items"]
    assert len(events) == 2 and "untolerated taint" in events[0]["message"]
    fake.stuck = False
    ready = api.resources.get(api_version="apps/v1", kind="Deployment").get(name="web", namespace=NS).to_dict()
    assert ready["status"]["readyReplicas"] == 2


def test_without_a_storage_class_a_statefulset_pod_waits_on_its_claim(api, fake):
    _ns(api)
    fake.no_storage_class = True
    _apply(api, {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": NS}, "spec": {
        "serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}},
        "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "example/db:1"}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                                         "resources": {"requests": {"storage": "1Gi"}}}}]}})
    claim = api.resources.get(api_version="v1", kind="PersistentVolumeClaim").get(name="data-db-0", namespace=NS).to_dict()
    assert claim["status"]["phase"] == "Pending" and claim["metadata"]["labels"] == {"app": "db"}
    pod = api.resources.get(api_version="v1", kind="Pod").get(name="db-0", namespace=NS).to_dict()
    assert "unbound immediate PersistentVolumeClaims" in pod["status"]["conditions"][0]["message"]
    events = api.resources.get(api_version="v1", kind="Event").get(namespace=NS, field_selector="reason=FailedBinding").to_dict()["items"]
    assert [(e["involvedObject"]["kind"], e["involvedObject"]["name"], e["message"]) for e in events] == [
        ("PersistentVolumeClaim", "data-db-0", "no persistent volumes available for this claim and no storage class is set")]


def test_an_unserved_kind_is_404_and_dry_run_stores_nothing(api, fake):
    _ns(api)
    status, dummy = _error(lambda: api.request("GET", "/apis/example.com/v1/namespaces/apps/widgets"))
    assert status == 404
    resource = api.resources.get(api_version="v1", kind="ConfigMap")
    made = resource.create(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}}, namespace=NS, dry_run="All").to_dict()
    assert made["metadata"]["name"] == "dry" and "dry" not in fake.names("configmaps", NS)


def test_an_image_that_cannot_be_pulled_waits_in_back_off_with_kubelet_events(api, fake):
    _ns(api)
    fake.unpullable = {"example/web:1"}
    _apply(api, DEPLOYMENT)
    pods = api.resources.get(api_version="v1", kind="Pod").get(namespace=NS).to_dict()["items"]
    assert [(p["spec"]["nodeName"], p["status"]["phase"], p["status"]["containerStatuses"][0]["state"]["waiting"]) for p in pods] == [
        ("node-1", "Pending", {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "example/web:1"'})] * 2
    events = api.resources.get(api_version="v1", kind="Event").get(namespace=NS, field_selector="reason=Failed").to_dict()["items"]
    assert len(events) == 2 and events[0]["message"].startswith('Failed to pull image "example/web:1": ')
    assert {e["involvedObject"]["name"] for e in events} == {p["metadata"]["name"] for p in pods}


def test_pod_security_restricted_refuses_a_pod_and_the_controller_reports_failed_create(api, fake):
    api.resources.get(api_version="v1", kind="Namespace").create(body={
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    _apply(api, DEPLOYMENT)
    fake.reconcile()
    assert fake.names("pods", NS) == []
    events = api.resources.get(api_version="v1", kind="Event").get(namespace=NS, field_selector="reason=FailedCreate").to_dict()["items"]
    assert len(events) == 2 and {e["involvedObject"]["kind"] for e in events} == {"ReplicaSet"}
    assert events[0]["involvedObject"]["name"].startswith("web-") and events[0]["source"]["component"] == "replicaset-controller"
    assert 'is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "web" must set' in events[0]["message"]
    # A pod that meets the profile is created.
    safe = copy.deepcopy(DEPLOYMENT)
    safe["spec"]["template"]["spec"]["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    safe["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    _apply(api, safe)
    fake.reconcile()  # the controllers act before the next request is answered
    assert len(fake.names("pods", NS)) == 2
    # A direct create of a pod that violates it is refused with the admission's text.
    status, message = _error(lambda: api.resources.get(api_version="v1", kind="Pod").create(namespace=NS, body={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"}, "spec": {"containers": [{"name": "c", "image": "example/c:1"}]}}))
    assert status == 403 and 'pods "bare" is forbidden: violates PodSecurity "restricted:latest"' in message


# ---------------------------------------------------------------- what kubectl requests (raw HTTP, as kubectl sends it)

def _http(fake, path, accept="application/json", timeout=10):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(fake.url + path, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type"), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read().decode()


def test_discovery_gives_short_names_and_the_pod_log_subresource(fake):
    import json

    core = {r["name"]: r for r in json.loads(_http(fake, "/api/v1")[2])["resources"]}
    assert core["persistentvolumeclaims"]["shortNames"] == ["pvc"] and core["services"]["shortNames"] == ["svc"]
    assert core["pods/log"]["verbs"] == ["get"] and "shortNames" not in core["secrets"]
    apps = {r["name"]: r for r in json.loads(_http(fake, "/apis/apps/v1")[2])["resources"]}
    assert apps["deployments"]["shortNames"] == ["deploy"] and apps["statefulsets"]["shortNames"] == ["sts"]
    kserve = {r["name"]: r for r in json.loads(_http(fake, "/apis/serving.kserve.io/v1beta1")[2])["resources"]}
    assert kserve["inferenceservices"]["shortNames"] == ["isvc"]  # from the CRD's spec.names.shortNames


def test_pod_logs_are_what_the_kubelet_holds(api, fake):
    _ns(api)
    _apply(api, DEPLOYMENT)
    fake.reconcile()
    pod = fake.names("pods", NS)[0]
    status, content_type, text = _http(fake, f"/api/v1/namespaces/{NS}/pods/{pod}/log")
    assert (status, content_type, text) == (200, "text/plain", "")  # nothing written
    fake.logs[(NS, pod, "web", False)] = "a\nb\nc\n"
    assert _http(fake, f"/api/v1/namespaces/{NS}/pods/{pod}/log?tailLines=2")[2] == "b\nc\n"
    status, dummy, body = _http(fake, f"/api/v1/namespaces/{NS}/pods/{pod}/log?previous=true")
    assert status == 400 and f'previous terminated container \\"web\\" in pod \\"{pod}\\" not found' in body
    status, dummy, body = _http(fake, f"/api/v1/namespaces/{NS}/pods/{pod}/log?container=nope")
    assert status == 400 and f"container nope is not valid for pod {pod}" in body
    assert _http(fake, f"/api/v1/namespaces/{NS}/pods/missing/log")[0] == 404


def test_a_list_is_a_table_when_kubectl_asks_for_one(api, fake):
    import json

    _ns(api)
    _apply(api, DEPLOYMENT)
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    table = json.loads(_http(fake, f"/apis/apps/v1/namespaces/{NS}/deployments", accept)[2])
    assert table["kind"] == "Table" and [c["name"] for c in table["columnDefinitions"]] == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert table["rows"][0]["cells"][:4] == ["web", "2/2", 2, 2] and table["rows"][0]["object"]["metadata"]["name"] == "web"
    pods = json.loads(_http(fake, f"/api/v1/namespaces/{NS}/pods", accept)[2])
    assert [r["cells"][1:4] for r in pods["rows"]] == [["1/1", "Running", "0"]] * 2
    assert json.loads(_http(fake, f"/api/v1/namespaces/{NS}/secrets", accept)[2])["kind"] == "SecretList"  # no columns here: the list
    assert json.loads(_http(fake, f"/apis/apps/v1/namespaces/{NS}/deployments")[2])["kind"] == "DeploymentList"


def test_a_watch_streams_the_changes_of_what_the_list_selects(api, fake):
    import json
    import threading

    _ns(api)
    _apply(api, DEPLOYMENT)
    events = []

    def watch():
        events.append(_http(fake, f"/apis/apps/v1/namespaces/{NS}/deployments?watch=true&fieldSelector=metadata.name%3Dweb&timeoutSeconds=2", timeout=20))

    thread = threading.Thread(target=watch)
    thread.start()
    while not any(r["query"].get("watch") for r in fake.requests):
        threading.Event().wait(0.02)
    _apply(api, dict(DEPLOYMENT, spec=dict(DEPLOYMENT["spec"], replicas=3)))
    thread.join()
    lines = [json.loads(line) for line in events[0][2].splitlines()]
    assert lines and {e["type"] for e in lines} == {"MODIFIED"} and lines[-1]["object"]["spec"]["replicas"] == 3


# ---------------------------------------------------------------- Jobs, pod logs, pod garbage collection, KServe

JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "namespace": NS},
       "spec": {"backoffLimit": 1, "template": {"metadata": {"labels": {"app": "once"}}, "spec": {
           "restartPolicy": "Never", "containers": [{"name": "run", "image": "example/run:1"}]}}}}


def _job_pods(api, job="once"):
    return api.resources.get(api_version="v1", kind="Pod").get(namespace=NS, label_selector=f"batch.kubernetes.io/job-name={job}").to_dict()["items"]


def test_a_job_gets_a_selector_on_its_uid_and_its_pods_the_labels_naming_it(api, fake):
    _ns(api)
    made = _apply(api, JOB)
    uid = made["metadata"]["uid"]
    # The API server's defaults for a Job without manualSelector (kube-apiserver 1.32).
    assert made["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert made["spec"]["template"]["metadata"]["labels"] == {"app": "once", "batch.kubernetes.io/controller-uid": uid,
                                                              "batch.kubernetes.io/job-name": "once", "controller-uid": uid, "job-name": "once"}
    pods = _job_pods(api)
    assert [(p["status"]["phase"], p["status"]["containerStatuses"][0]["state"]) for p in pods] == [
        ("Succeeded", {"terminated": {"exitCode": 0, "reason": "Completed"}})]
    job = api.resources.get(api_version="batch/v1", kind="Job").get(name="once", namespace=NS).to_dict()
    assert job["status"]["succeeded"] == 1 and [c["reason"] for c in job["status"]["conditions"]] == ["CompletionsReached"] * 2
    # The applier owns what it applied, not the server's defaults: the same apply again changes nothing.
    again = _apply(api, JOB)
    assert again["metadata"]["resourceVersion"] == api.resources.get(api_version="batch/v1", kind="Job").get(
        name="once", namespace=NS).to_dict()["metadata"]["resourceVersion"]
    assert again["spec"]["selector"] == made["spec"]["selector"]


def test_a_job_whose_container_fails_is_retried_up_to_its_backoff_limit_then_fails(api, fake):
    _ns(api)
    fake.set_pod_exit(NS, "once-", 2)
    _apply(api, JOB)
    pods = _job_pods(api)
    # backoffLimit 1: two pods ran and failed, then the Job failed (conditions and event as the job controller writes them).
    assert [(p["status"]["phase"], p["status"]["containerStatuses"][0]["state"]["terminated"]) for p in pods] == [
        ("Failed", {"exitCode": 2, "reason": "Error"})] * 2
    job = api.resources.get(api_version="batch/v1", kind="Job").get(name="once", namespace=NS).to_dict()
    assert job["status"]["failed"] == 2
    assert [(c["type"], c["reason"], c["message"]) for c in job["status"]["conditions"]] == [
        ("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]
    events = api.resources.get(api_version="v1", kind="Event").get(namespace=NS, field_selector="reason=BackoffLimitExceeded").to_dict()["items"]
    assert [(e["type"], e["involvedObject"]["kind"], e["involvedObject"]["name"]) for e in events] == [("Warning", "Job", "once")]


def test_a_job_refused_by_pod_security_has_no_pod_and_a_failed_create_event(api, fake):
    api.resources.get(api_version="v1", kind="Namespace").create(body={
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    _apply(api, JOB)
    assert _job_pods(api) == []
    job = api.resources.get(api_version="batch/v1", kind="Job").get(name="once", namespace=NS).to_dict()
    assert job["status"]["active"] == 0 and "conditions" not in job["status"]
    events = api.resources.get(api_version="v1", kind="Event").get(namespace=NS, field_selector="reason=FailedCreate").to_dict()["items"]
    assert [(e["involvedObject"]["kind"], e["source"]["component"]) for e in events] == [("Job", "job-controller")]
    assert 'is forbidden: violates PodSecurity "restricted:latest"' in events[0]["message"]


def test_the_pod_garbage_collector_removes_ended_pods_and_a_finished_job_makes_none_again(api, fake):
    _ns(api)
    fake.gc_finished_pods = True
    _apply(api, JOB)
    job = api.resources.get(api_version="batch/v1", kind="Job").get(name="once", namespace=NS).to_dict()
    assert job["status"]["succeeded"] == 1 and _job_pods(api) == []
    fake.reconcile()
    assert _job_pods(api) == [] and fake.names("jobs", NS) == ["once"]


def test_a_pod_log_is_what_the_test_says_the_container_printed(fake):
    fake.set_pod_log(NS, "once-", "first\n")
    fake.set_pod_log(NS, "once-now-", "second\n")
    assert fake.pod_log(NS, "once-abcde") == "first\n" and fake.pod_log(NS, "once-now-abcde") == "second\n"
    assert fake.pod_log(NS, "other-abcde") is None and fake.pod_log("elsewhere", "once-abcde") is None


def test_a_deployment_scaled_to_zero_has_no_counts_in_its_status(api):
    _ns(api)
    _apply(api, DEPLOYMENT)
    resource = api.resources.get(api_version="apps/v1", kind="Deployment")
    resource.scale.patch(body={"kind": "Deployment", "metadata": {"name": "web", "namespace": NS}, "spec": {"replicas": 0}})
    status = resource.get(name="web", namespace=NS).to_dict()["status"]
    # Every count is omitempty on a real server: none is written as 0.
    assert sorted(status) == ["conditions", "observedGeneration"], status


def test_kserve_reports_inference_services_ready_with_their_predictor_address_and_url(api, fake):
    _ns(api)
    fake.add({"apiVersion": "config.openshift.io/v1", "kind": "Ingress", "metadata": {"name": "cluster"}, "spec": {"domain": "apps.example.com"}})
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "granite", "namespace": NS},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "vLLM"}, "runtime": "granite"}}}}
    _apply(api, isvc)
    resource = api.resources.get(api_version="serving.kserve.io/v1beta1", kind="InferenceService")
    assert "status" not in resource.get(name="granite", namespace=NS).to_dict()  # without KServe nobody reports
    fake.kserve = True
    status = resource.get(name="granite", namespace=NS).to_dict()["status"]
    # Raw deployment mode (../shared/reference/kserve-serving.md): the address has no port and no /v1; the URL's host
    # comes from the domain template {name}-{namespace}.{ingress domain}.
    assert status["address"] == {"url": f"http://granite-predictor.{NS}.svc.cluster.local"}
    assert status["url"] == f"http://granite-{NS}.apps.example.com"
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [("IngressReady", "True"), ("PredictorReady", "True"), ("Ready", "True")]
    local = dict(isvc, metadata=dict(isvc["metadata"], name="local", labels={"networking.kserve.io/visibility": "cluster-local"}))
    _apply(api, local)
    assert resource.get(name="local", namespace=NS).to_dict()["status"]["url"] == f"http://local-predictor.{NS}.svc.cluster.local"


def test_the_token_controller_fills_a_service_account_token_secret_and_deletes_one_without_its_account(api, fake):
    import base64
    import json

    _ns(api)
    _apply(api, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "model-client", "namespace": NS}})
    _apply(api, {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                 "metadata": {"name": "model-client-token", "namespace": NS, "annotations": {"kubernetes.io/service-account.name": "model-client"}}})
    secrets = api.resources.get(api_version="v1", kind="Secret")
    secret = secrets.get(name="model-client-token", namespace=NS).to_dict()
    account = api.resources.get(api_version="v1", kind="ServiceAccount").get(name="model-client", namespace=NS).to_dict()
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert sorted(data) == ["ca.crt", "namespace", "token"] and data["namespace"] == NS
    assert data["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    # A JWT naming the account, as the legacy token the controller signs.
    claims = json.loads(base64.urlsafe_b64decode(data["token"].split(".")[1] + "=="))
    assert claims["sub"] == f"system:serviceaccount:{NS}:model-client"
    assert claims["kubernetes.io/serviceaccount/service-account.uid"] == account["metadata"]["uid"]
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == account["metadata"]["uid"]
    # The controller's fields are its own: the same apply again keeps them and leaves the Secret as it is.
    assert {e["manager"] for e in secret["metadata"]["managedFields"]} == {"rhpds.litemaas", "kube-controller-manager"}
    again = _apply(api, {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                         "metadata": {"name": "model-client-token", "namespace": NS,
                                      "annotations": {"kubernetes.io/service-account.name": "model-client"}}})
    assert again["data"] == secret["data"] and again["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]
    # A token Secret of an account that does not exist is deleted; an Opaque Secret is nobody's business.
    _apply(api, {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                 "metadata": {"name": "orphan-token", "namespace": NS, "annotations": {"kubernetes.io/service-account.name": "nobody"}}})
    _apply(api, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "plain", "namespace": NS}, "stringData": {"a": "b"}})
    names = [s["metadata"]["name"] for s in secrets.get(namespace=NS).to_dict()["items"]]
    assert "orphan-token" not in names and {"model-client-token", "plain"} <= set(names), names
    assert "token" not in (secrets.get(name="plain", namespace=NS).to_dict().get("data") or {})


# ---------------------------------------------------------------- KServe's predictor, GPUs, route hosts

def test_kserve_creates_the_predictor_deployment_and_service_of_an_inference_service_with_its_runtime(api, fake):
    from tests.support.kserve_objects import inference_service, vllm_runtime

    _ns(api)
    fake.kserve = True
    _apply(api, vllm_runtime(NS))
    isvc = inference_service("granite", NS, "vLLM", "vllm-runtime", args=["--max-model-len=8192"])
    isvc.pop("status")
    isvc["spec"]["predictor"]["model"]["resources"] = {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}
    _apply(api, isvc)
    fake.reconcile()
    owner = fake.objects[("inferenceservices", NS, "granite")]["metadata"]["uid"]
    labels = {"opendatahub.io/dashboard": "true", "serving.kserve.io/inferenceservice": "granite", "component": "predictor", "app": "isvc.granite-predictor"}
    deployment = fake.objects[("deployments", NS, "granite-predictor")]
    assert deployment["metadata"]["labels"] == labels and deployment["metadata"]["ownerReferences"][0]["uid"] == owner
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "isvc.granite-predictor"}}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "kserve-container" and container["image"] == "quay.io/modh/vllm:rhoai-2.23-cuda"
    assert container["args"] == ["--port=8080", "--model=/mnt/models", "--served-model-name=granite", "--max-model-len=8192"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    service = fake.objects[("services", NS, "granite-predictor")]
    assert service["metadata"]["labels"] == labels and service["spec"]["selector"] == {"app": "isvc.granite-predictor"}
    # The runtime's port has no name: the Service names it http, port 80 to the container's 8080.
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]
    pods = api.resources.get(api_version="v1", kind="Pod").get(namespace=NS, label_selector="component=predictor").to_dict()["items"]
    assert [p["metadata"]["labels"] for p in pods] == [labels] and pods[0]["status"]["phase"] == "Running"
    services = api.resources.get(api_version="v1", kind="Service").get(namespace=NS, label_selector="serving.kserve.io/inferenceservice in (granite)")
    assert [s["metadata"]["name"] for s in services.to_dict()["items"]] == ["granite-predictor"]
    ready = api.resources.get(api_version="serving.kserve.io/v1beta1", kind="InferenceService").get(name="granite", namespace=NS).to_dict()["status"]
    assert [(c["type"], c["status"]) for c in ready["conditions"]] == [("IngressReady", "True"), ("PredictorReady", "True"), ("Ready", "True")]
    # Deleting the InferenceService removes what KServe made for it (garbage collection of owned objects).
    api.resources.get(api_version="serving.kserve.io/v1beta1", kind="InferenceService").delete(name="granite", namespace=NS)
    fake.reconcile()
    assert fake.names("deployments", NS) == [] and fake.names("services", NS) == [] and fake.names("pods", NS) == []


def test_a_predictor_asking_for_more_gpus_than_the_node_has_stays_pending_and_its_model_not_ready(api, fake):
    from tests.support.kserve_objects import inference_service, vllm_runtime

    _ns(api)
    fake.kserve, fake.gpus = True, 1
    _apply(api, vllm_runtime(NS))
    for name in ("first", "second"):
        isvc = inference_service(name, NS, "vLLM", "vllm-runtime")
        isvc.pop("status")
        isvc["spec"]["predictor"]["model"]["resources"] = {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}
        _apply(api, isvc)
        fake.reconcile()
    phases = {p["metadata"]["labels"]["serving.kserve.io/inferenceservice"]: p["status"]
              for (r, ns, n), p in fake.objects.items() if r == "pods" and ns == NS}
    assert phases["first"]["phase"] == "Running" and phases["second"]["phase"] == "Pending"
    assert phases["second"]["conditions"] == [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message":
                                               "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: "
                                               "1 No preemption victims found for incoming pod."}]
    events = [e for (r, ns, n), e in fake.objects.items() if r == "events" and e["reason"] == "FailedScheduling"]
    assert [e["involvedObject"]["name"].startswith("second-predictor-") for e in events] == [True]
    status = fake.objects[("inferenceservices", NS, "second")]["status"]
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [("IngressReady", "True"), ("PredictorReady", "False"), ("Ready", "False")]
    assert status["conditions"][2]["reason"] == "MinimumReplicasUnavailable" and status["modelStatus"]["states"]["activeModelState"] == "Pending"
    assert fake.objects[("inferenceservices", NS, "first")]["status"]["conditions"][2]["status"] == "True"


def test_a_route_created_without_a_host_gets_one_from_the_ingress_domain_and_keeps_it(api, fake):
    _ns(api)
    fake.add({"apiVersion": "config.openshift.io/v1", "kind": "Ingress", "metadata": {"name": "cluster"}, "spec": {"domain": "apps.example.com"}})
    route = {"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": {"name": "grafana", "namespace": NS},
             "spec": {"to": {"kind": "Service", "name": "grafana"}}}
    created = _apply(api, route)
    assert created["spec"]["host"] == f"grafana-{NS}.apps.example.com"
    version = created["metadata"]["resourceVersion"]
    again = _apply(api, route)  # the host is nobody's field: applying without it keeps it and changes nothing
    assert again["spec"]["host"] == f"grafana-{NS}.apps.example.com" and again["metadata"]["resourceVersion"] == version
    given = _apply(api, dict(route, metadata={"name": "named", "namespace": NS}, spec=dict(route["spec"], host="grafana.example.org")))
    assert given["spec"]["host"] == "grafana.example.org"


def test_a_secrets_string_data_is_stored_as_data(api, fake):
    import base64

    _ns(api)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "admin", "namespace": NS}, "type": "Opaque",
              "data": {"user": base64.b64encode(b"old").decode()}, "stringData": {"user": "admin", "password": "s3cret"}}
    stored = _apply(api, secret)
    assert "stringData" not in stored and {k: base64.b64decode(v).decode() for k, v in stored["data"].items()} == {"user": "admin", "password": "s3cret"}
    assert _apply(api, secret)["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]  # the same again: unchanged


def test_a_custom_resource_is_a_table_with_its_crds_printer_columns(api, fake):
    import json

    _ns(api)
    fake.kserve = True
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "granite", "namespace": NS},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "vLLM"}, "runtime": "granite"}}}}
    _apply(api, isvc)
    fake.reconcile()
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    table = json.loads(_http(fake, f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices", accept)[2])
    columns = ["Name", "URL", "Ready", "Prev", "Latest", "PrevRolledoutRevision", "LatestReadyRevision", "Age"]
    assert [c["name"] for c in table["columnDefinitions"]] == columns
    assert table["rows"][0]["cells"][:7] == ["granite", f"http://granite-predictor.{NS}.svc.cluster.local", "True", None, None, None, None]

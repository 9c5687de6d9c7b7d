"""The schema validator used by every render test (tests/support/k8s_schemas.py): each validator rejects a broken
object, names file, kind/name and JSON path, applies CRD defaults, and fails on a kind without a schema."""

from __future__ import annotations

import copy
import re

import jsonschema
import pytest
import yaml

from tests.support import k8s_schemas as ks

ROUTE = {"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": {"name": "litellm", "namespace": "litemaas"},
         "spec": {"host": "litellm.apps.example.com", "to": {"kind": "Service", "name": "litellm", "weight": 100},
                  "port": {"targetPort": "http"}, "tls": {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}}}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "litellm", "labels": {"app": "litellm"}},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "litellm"}},
                       "template": {"metadata": {"labels": {"app": "litellm"}},
                                    "spec": {"containers": [{"name": "proxy", "image": "quay.io/example/proxy:1"}]}}}}
OAUTH_CLIENT = {"apiVersion": "oauth.openshift.io/v1", "kind": "OAuthClient", "metadata": {"name": "litemaas"},
                "grantMethod": "auto", "secret": "s3cret", "redirectURIs": ["https://litellm-frontend.apps.example.com/api/auth/callback"]}
SERVICE_MONITOR = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "litemaas-proxy"},
                   "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "litellm"}},
                            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}]}}
PROMETHEUS_RULE = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "alerts"},
                   "spec": {"groups": [{"name": "litemaas", "rules": [{"alert": "Down", "expr": "up == 0", "for": "5m",
                                                                       "labels": {"severity": "critical"}}]}]}}
DASHBOARD = {"apiVersion": "grafana.integreatly.org/v1beta1", "kind": "GrafanaDashboard", "metadata": {"name": "litemaas-proxy"},
             "spec": {"instanceSelector": {"matchLabels": {"dashboards": "litemaas"}}, "json": "{}"}}


def problems(obj, **kwargs) -> list:
    return ks.check([("x.yaml", obj)], **kwargs).problems


def with_(obj, path, value):
    obj = copy.deepcopy(obj)
    *parents, last = path
    node = obj
    for key in parents:
        node = node[key]
    node[last] = value
    return obj


def test_good_objects_pass_and_say_which_schema_checked_them():
    report = ks.assert_valid([("a.yaml", ROUTE), ("a.yaml", DEPLOYMENT), ("b.yaml", OAUTH_CLIENT), ("c.yaml", SERVICE_MONITOR),
                              ("c.yaml", PROMETHEUS_RULE), ("d.yaml", DASHBOARD)], minimum=6)
    assert report.validators_of("Route") == {"crd routes.route.openshift.io", "openshift-openapi"}
    assert report.validators_of("Deployment") == {f"kubernetes {ks.K8S_VERSION}"}
    assert report.validators_of("OAuthClient") == {"openshift-openapi"}
    assert report.validators_of("ServiceMonitor") == {"crd servicemonitors.monitoring.coreos.com"}
    assert report.validators_of("GrafanaDashboard") == {"crd grafanadashboards.grafana.integreatly.org"}


def test_kubernetes_validator_rejects_a_broken_deployment():
    found = problems(with_(DEPLOYMENT, ["spec", "replicas"], "three"))
    assert [(p.path, p.validator) for p in found] == [("spec.replicas", f"kubernetes {ks.K8S_VERSION}")]
    assert "'three' is not of type 'integer'" in found[0].message
    unknown = problems(with_(DEPLOYMENT, ["spec", "template", "spec", "containers", 0, "imagePullPolicyy"], "Always"))
    assert [p.path for p in unknown] == ["spec.template.spec.containers[0]"] and "imagePullPolicyy" in unknown[0].message


def test_openshift_validator_rejects_a_broken_oauthclient_and_route():
    found = problems(with_(OAUTH_CLIENT, ["redirectURIs"], "https://one.example.com"))
    assert [(p.path, p.validator) for p in found] == [("redirectURIs", "openshift-openapi")]
    found = problems(with_(OAUTH_CLIENT, ["accessTokenMaxAgeSecond"], 60))
    assert [(p.path, p.validator) for p in found] == [("(root)", "openshift-openapi")] and "accessTokenMaxAgeSecond" in found[0].message
    # A misspelt Route field is refused by both schemas that cover Route.
    found = problems(with_(ROUTE, ["spec", "tls", "insecureEdgeTermination"], "Redirect"))
    assert {(p.path, p.validator) for p in found} == {("spec.tls", "openshift-openapi"), ("spec.tls", "crd routes.route.openshift.io")}


def test_crd_validators_reject_broken_monitoring_and_grafana_objects():
    found = problems(with_(SERVICE_MONITOR, ["spec", "endpoints", 0, "prot"], "http"))
    assert [(p.path, p.validator) for p in found] == [("spec.endpoints[0]", "crd servicemonitors.monitoring.coreos.com")]
    found = problems(with_(SERVICE_MONITOR, ["spec", "endpoints", 0, "scheme"], "ftp"))
    assert [p.path for p in found] == ["spec.endpoints[0].scheme"]
    found = problems(with_(PROMETHEUS_RULE, ["spec", "groups", 0, "rules", 0, "for"], "five minutes"))
    assert [(p.path, p.validator) for p in found] == [("spec.groups[0].rules[0].for", "crd prometheusrules.monitoring.coreos.com")]
    found = problems(with_(DASHBOARD, ["spec", "resyncPeriod"], 30))
    assert [(p.path, p.validator) for p in found] == [("spec.resyncPeriod", "crd grafanadashboards.grafana.integreatly.org")]
    podmonitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "vllm"},
                  "spec": {"selector": {}, "podMetricsEndpoints": [{"port": 8080}]}}
    assert [p.path for p in problems(podmonitor)] == ["spec.podMetricsEndpoints[0].port"]


def test_crd_extras_are_known():
    subscription = {"apiVersion": "operators.coreos.com/v1alpha1", "kind": "Subscription", "metadata": {"name": "grafana-operator"},
                    "spec": {"name": "grafana-operator", "source": "community-operators", "sourceNamespace": "openshift-marketplace",
                             "channel": "v5", "installPlanApproval": "Automatic"}}
    assert problems(subscription) == []
    assert [p.path for p in problems(with_(subscription, ["spec", "startingCSV"], 5))] == ["spec.startingCSV"]
    group = {"apiVersion": "operators.coreos.com/v1", "kind": "OperatorGroup", "metadata": {"name": "grafana"}, "spec": {"upgradeStrategy": "Default"}}
    assert problems(group) == []
    folder = {"apiVersion": "grafana.integreatly.org/v1beta1", "kind": "GrafanaFolder", "metadata": {"name": "litemaas"},
              "spec": {"instanceSelector": {"matchLabels": {"dashboards": "litemaas"}}, "title": "LiteMaaS"}}
    assert problems(folder) == []
    # OperatorGroup v1alpha2 is served; VolumeSnapshot v1beta1 is not.
    assert problems(dict(group, apiVersion="operators.coreos.com/v1alpha2", spec={"targetNamespaces": ["litemaas"]})) == []
    snapshot = {"apiVersion": "snapshot.storage.k8s.io/v1beta1", "kind": "VolumeSnapshot", "metadata": {"name": "s"},
                "spec": {"source": {"persistentVolumeClaimName": "data"}}}
    assert [(p.path, p.validator) for p in problems(snapshot)] == [("apiVersion", "crd volumesnapshots.snapshot.storage.k8s.io")]
    assert problems(dict(snapshot, apiVersion="snapshot.storage.k8s.io/v1")) == []


def test_crd_defaults_are_applied_before_validation():
    # The Route schema needs a host unless wildcardPolicy is Subdomain; wildcardPolicy defaults to None.
    no_host = copy.deepcopy(ROUTE)
    del no_host["spec"]["host"]
    assert problems(no_host) == []
    subdomain = with_(no_host, ["spec", "wildcardPolicy"], "Subdomain")
    assert [p.path for p in problems(subdomain) if p.validator.startswith("crd")] == ["spec"]
    raw, _validator = ks._crd_version(ks.crd_index()[("route.openshift.io", "Route")], "v1")
    defaulted = copy.deepcopy(no_host)
    ks._defaults(defaulted, raw)
    assert defaulted["spec"]["wildcardPolicy"] == "None"
    assert defaulted["spec"]["to"]["kind"] == "Service" and defaulted["spec"]["to"]["weight"] == 100
    # A null of a non-nullable field is dropped (and then defaulted), as the API server does.
    assert problems(with_(ROUTE, ["spec", "wildcardPolicy"], None)) == []


def test_crd_int_or_string_and_list_map_keys():
    for port in (8080, "metrics"):
        assert problems(with_(SERVICE_MONITOR, ["spec", "endpoints", 0, "targetPort"], port)) == []
    assert [p.path for p in problems(with_(SERVICE_MONITOR, ["spec", "endpoints", 0, "targetPort"], True))] == ["spec.endpoints[0].targetPort"]
    twice = with_(PROMETHEUS_RULE, ["spec", "groups"], PROMETHEUS_RULE["spec"]["groups"] * 2)
    found = problems(twice)
    assert [p.path for p in found] == ["spec.groups"] and "x-kubernetes-list-type: map" in found[0].message


def test_crd_embedded_resource_needs_kind_and_api_version():
    schema = ks._structural({"type": "object", "properties": {"template": {
        "type": "object", "x-kubernetes-embedded-resource": True, "x-kubernetes-preserve-unknown-fields": True}}})
    schema["definitions"] = ks._definitions_closure(ks.OBJECT_META)
    validator = ks._CrdValidator(schema)
    assert not list(validator.iter_errors({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}}))
    messages = sorted(e.message for e in validator.iter_errors({"template": {"metadata": {"name": "p", "labelz": {}}}}))
    assert messages == ["'apiVersion' is a required property", "'kind' is a required property",
                        "Additional properties are not allowed ('labelz' was unexpected)"]


def test_cel_rules_are_evaluated():
    assert ks.CEL_AVAILABLE, "cel-python is not installed: the CRDs' x-kubernetes-validations (CEL) rules are not evaluated"
    both = with_(ROUTE, ["spec", "tls"], {"termination": "passthrough", "insecureEdgeTerminationPolicy": "Allow"})
    found = problems(both)
    assert [(p.path, p.message) for p in found] == [
        ("spec.tls", "cannot have both spec.tls.termination: passthrough and spec.tls.insecureEdgeTerminationPolicy: Allow")]
    header = {"actions": {"response": [{"name": "Set-Cookie", "action": {"type": "Set", "set": {"value": "x"}}}]}}
    found = problems(with_(ROUTE, ["spec", "httpHeaders"], header))
    assert [(p.path, p.message) for p in found] == [("spec.httpHeaders.actions.response[0].name", "set-cookie header may not be modified via header actions")]
    ok = {"actions": {"response": [{"name": "X-Frame-Options", "action": {"type": "Set", "set": {"value": "DENY"}}}]}}
    assert problems(with_(ROUTE, ["spec", "httpHeaders"], ok)) == []


def test_a_kind_without_a_schema_is_a_problem_not_a_pass():
    found = problems({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    assert [p.path for p in found] == ["(root)"] and "no schema for example.com/v1 Widget" in found[0].message
    assert "no schema" in problems({"apiVersion": "v1", "kind": "Podd", "metadata": {"name": "w"}})[0].message
    assert "not a Kubernetes object" in problems({"metadata": {"name": "w"}})[0].message
    with pytest.raises(ks.SchemaViolation):
        ks.assert_valid([("x.yaml", {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})])


def test_names_and_labels_are_checked_for_every_kind():
    found = problems(with_(SERVICE_MONITOR, ["metadata", "name"], "LiteMaaS_Proxy"))
    assert [(p.path, p.validator) for p in found] == [("metadata.name", "metadata")]
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1st.service"}, "spec": {"ports": [{"port": 80}]}}
    assert [p.path for p in problems(service)] == ["metadata.name"]
    found = problems(with_(DEPLOYMENT, ["metadata", "labels"], {"app": "x" * 64, "bad key!": "v"}))
    assert sorted(p.path for p in found) == ["metadata.labels.app", 'metadata.labels["bad key!"]']


def test_patches_skip_required_fields_only():
    patch = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "litellm", "namespace": "litemaas"}, "spec": {"replicas": 5}}
    assert [p.message for p in problems(patch)] == ["'selector' is a required property", "'template' is a required property"]
    assert ks.check([("day2/scale/deployment.yaml", patch)], patches=["day2/scale/*"]).problems == []
    broken = with_(patch, ["spec", "replicas"], "five")
    assert [p.path for p in ks.check([("day2/scale/deployment.yaml", broken)], patches=["day2/scale/*"]).problems] == ["spec.replicas"]


def test_a_render_directory_is_checked_file_by_file(tmp_path):
    (tmp_path / "05-routes").mkdir()
    (tmp_path / "05-routes" / "route.yaml").write_text(yaml.safe_dump_all([ROUTE, with_(ROUTE, ["spec", "to", "kind"], 7)]))
    (tmp_path / "notes.txt").write_text("not a manifest")
    with pytest.raises(ks.SchemaViolation) as caught:
        ks.assert_valid(tmp_path, minimum=2)
    text = str(caught.value)
    assert "05-routes/route.yaml: Route/litellm: spec.to.kind: 7 is not of type 'string'" in text
    report = ks.check(tmp_path)
    assert [c[:3] for c in report.checked] == [("05-routes/route.yaml", "Route", "litellm")] * 2
    with pytest.raises(AssertionError, match="only 2 object"):
        ks.assert_valid([("a.yaml", ROUTE), ("b.yaml", ROUTE)], minimum=3)


def test_missing_shared_folder_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("LITEMAAS_SHARED_DIR", str(tmp_path))
    with pytest.raises(ks.SchemaUnavailable, match="LITEMAAS_SHARED_DIR"):
        ks.shared_dir()


def test_every_crd_in_shared_is_indexed_and_compiles():
    index = ks.crd_index()
    expected = {("route.openshift.io", "Route"), ("monitoring.coreos.com", "ServiceMonitor"), ("monitoring.coreos.com", "PodMonitor"),
                ("monitoring.coreos.com", "PrometheusRule"), ("grafana.integreatly.org", "Grafana"),
                ("grafana.integreatly.org", "GrafanaDashboard"), ("grafana.integreatly.org", "GrafanaDatasource"),
                ("grafana.integreatly.org", "GrafanaFolder"), ("operators.coreos.com", "Subscription"),
                ("operators.coreos.com", "OperatorGroup"), ("serving.kserve.io", "InferenceService")}
    assert expected <= set(index)
    assert len(index) == len(list((ks.shared_dir() / "crds").rglob("*.yaml")))
    for (group, kind), path in index.items():
        if path.stat().st_size > 1_000_000:
            continue  # KServe's InferenceService: 2 MB of YAML, parsed only where an InferenceService is rendered
        doc = ks._crd(path)
        assert (doc["spec"]["group"], doc["spec"]["names"]["kind"]) == (group, kind)
        for version in doc["spec"]["versions"]:
            if version.get("served"):
                _raw, validator = ks._crd_version(path, version["name"])
                assert not list(jsonschema.Draft4Validator(jsonschema.Draft4Validator.META_SCHEMA).iter_errors(validator.schema)), path


def test_every_kind_in_the_templates_has_a_schema():
    """Also the kinds of templates that the render tests' variable sets do not reach."""
    found = set()
    for path in sorted([*ks.REPO.glob("roles/*/templates/**/*.j2"), *ks.REPO.glob("playbooks/templates/**/*.j2")]):
        for api_version, kind in re.findall(r"^apiVersion: *['\"]?([\w./-]+)['\"]?\s*\n(?:#.*\n)*kind: *(\w+)", path.read_text(), re.M):
            found.add((api_version, kind))
            assert ks.validators_for(api_version, kind), f"{path.relative_to(ks.REPO)}: no schema for {api_version} {kind}"
    assert {("apps/v1", "Deployment"), ("route.openshift.io/v1", "Route"), ("monitoring.coreos.com/v1", "ServiceMonitor"),
            ("grafana.integreatly.org/v1beta1", "GrafanaDashboard"), ("oauth.openshift.io/v1", "OAuthClient")} <= found

"""The deploy role in render mode: valid manifests, security and HA properties, isolation, secrets, idempotence."""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import stat
from pathlib import Path

import pytest
import yaml

from tests.roles.conftest import PINNED_MASTER_KEY, REPO, ROLE, VARSETS
from tests.support import k8s_schemas

ALL = list(VARSETS)
COMPONENT_DIRS = ["01-namespace", "02-postgresql", "03-redis", "04-proxy", "05-routes", "06-oauth", "07-backend", "08-branding", "09-frontend"]


def pod_specs(run):
    for doc in run.docs():
        if doc["kind"] in ("Deployment", "StatefulSet"):
            yield doc, doc["spec"]["template"]["spec"]


def containers(spec):
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def secret_values(run) -> dict:
    values = {}
    for doc in run.find("Secret"):
        for key, value in (doc.get("data") or {}).items():
            values[f"{doc['metadata']['name']}/{key}"] = base64.b64decode(value).decode()
        for key, value in (doc.get("stringData") or {}).items():
            values[f"{doc['metadata']['name']}/{key}"] = value
    return values


# --------------------------------------------------------------------------------------------------------------------
# Schema validation


def clean(doc):
    return {k: v for k, v in doc.items() if k != "__file__"}


@pytest.mark.parametrize("name", ALL)
def test_every_manifest_is_valid(renders, name):
    """Each object against the schema its API server uses (tests/support/k8s_schemas.py): Kubernetes 1.33 for the
    built-in kinds, the OpenShift OpenAPI document for OAuthClient/BuildConfig/ImageStream, the upstream CRD (and the
    OpenShift document) for Route."""
    run = renders[name]
    report = k8s_schemas.assert_valid(run.docs(), minimum=20)
    expected = {"Route": {"crd routes.route.openshift.io", "openshift-openapi"}, "OAuthClient": {"openshift-openapi"},
                "BuildConfig": {"openshift-openapi"}, "Deployment": {f"kubernetes {k8s_schemas.K8S_VERSION}"}}
    for kind, validators in expected.items():
        if run.find(kind):
            assert report.validators_of(kind) == validators, kind


# --------------------------------------------------------------------------------------------------------------------
# Labels, order, names


@pytest.mark.parametrize("name", ALL)
def test_every_object_is_labelled_for_removal(renders, name):
    run = renders[name]
    instance = run.extra_vars.get("ocp4_workload_litemaas_namespace", "litemaas")
    for doc in run.docs():
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/managed-by") == "rhpds.litemaas", doc["metadata"]["name"]
        assert labels.get("app.kubernetes.io/instance") == instance, doc["metadata"]["name"]
        if doc["kind"] not in ("Namespace", "OAuthClient"):
            assert doc["metadata"]["namespace"] == instance
    for doc, _spec in pod_specs(run):
        assert doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "rhpds.litemaas"
    for sts in run.find("StatefulSet"):
        for claim in sts["spec"]["volumeClaimTemplates"]:
            assert claim["metadata"]["labels"]["app.kubernetes.io/instance"] == instance


def test_components_are_rendered_in_deployment_order(renders):
    run = renders["defaults"]
    dirs = sorted({rel.split("/")[0] for rel in run.files})
    assert dirs == COMPONENT_DIRS
    names = {(d["kind"], d["metadata"]["name"]) for d in run.docs()}
    for expected in [("Secret", "litellm-secret"), ("Secret", "litemaas-db"), ("Secret", "backend-secret"), ("Secret", "litellm-redis"),
                     ("Service", "litellm"), ("Service", "litellm-backend"), ("Service", "litellm-frontend"),
                     ("Service", "litellm-postgres"), ("Service", "litellm-redis"), ("StatefulSet", "litellm-postgres"),
                     ("Deployment", "litellm"), ("Deployment", "litellm-backend"), ("Deployment", "litellm-frontend"),
                     ("Deployment", "litellm-redis"), ("Route", "litellm"), ("Route", "litellm-admin"), ("Route", "litellm-frontend"),
                     ("OAuthClient", "litemaas"), ("BuildConfig", "litemaas-proxy"), ("ImageStream", "litemaas-proxy"),
                     ("ConfigMap", "litemaas-branding"), ("Namespace", "litemaas")]:
        assert expected in names


def test_services_keep_the_upstream_ports(renders):
    run = renders["defaults"]
    ports = {s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in run.find("Service")}
    assert ports == {"litellm": 4000, "litellm-backend": 8080, "litellm-frontend": 8080, "litellm-postgres": 5432, "litellm-redis": 6379}


# --------------------------------------------------------------------------------------------------------------------
# Security and HA


@pytest.mark.parametrize("name", ALL)
def test_restricted_scc_security_context_everywhere(renders, name):
    for doc, spec in pod_specs(renders[name]):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec.get("automountServiceAccountToken") is False
        assert "hostNetwork" not in spec and "hostPID" not in spec
        for c in containers(spec):
            where = f"{doc['metadata']['name']}/{c['name']}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            assert "privileged" not in sc and "runAsUser" not in sc, where


@pytest.mark.parametrize("name", ALL)
def test_probes_requests_and_limits(renders, name):
    for doc, spec in pod_specs(renders[name]):
        for c in containers(spec):
            where = f"{doc['metadata']['name']}/{c['name']}"
            for part in ("requests", "limits"):
                assert set(c["resources"][part]) == {"cpu", "memory"}, where
        for c in spec["containers"]:
            assert "readinessProbe" in c and "livenessProbe" in c, doc["metadata"]["name"]


def replicas(run, name):
    return run.one("Deployment", name)["spec"]["replicas"]


def test_ha_defaults(renders):
    run = renders["defaults"]
    assert replicas(run, "litellm") == 3
    assert replicas(run, "litellm-frontend") == 2
    assert replicas(run, "litellm-backend") == 1  # OAuth state lives in memory
    pdbs = {p["metadata"]["name"]: p for p in run.find("PodDisruptionBudget")}
    assert set(pdbs) == {"litellm", "litellm-frontend"}
    for name, pdb in pdbs.items():
        assert pdb["spec"]["maxUnavailable"] == 1
        deployment = run.one("Deployment", name)
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        spec = deployment["spec"]["template"]["spec"]
        keys = {t["topologyKey"] for t in spec["topologySpreadConstraints"]}
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        for t in spec["topologySpreadConstraints"]:
            assert t["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_ha_off_runs_one_of_each_without_pdbs(renders):
    run = renders["ha_off"]
    for d in run.find("Deployment"):
        assert d["spec"]["replicas"] == 1, d["metadata"]["name"]
        assert "topologySpreadConstraints" not in d["spec"]["template"]["spec"]
    assert run.find("PodDisruptionBudget") == []


# --------------------------------------------------------------------------------------------------------------------
# NetworkPolicies: evaluated, not just looked at


def selector_matches(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        present, value = expr["key"] in labels, labels.get(expr["key"])
        op = expr["operator"]
        if (op == "In" and value not in expr["values"]) or (op == "NotIn" and value in expr["values"]):
            return False
        if (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def allowed(policies, namespace, target_labels, source_labels, source_ns, source_ns_labels, port) -> bool:
    selecting = [p for p in policies if selector_matches(p["spec"]["podSelector"], target_labels) and "Ingress" in p["spec"]["policyTypes"]]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            if rule.get("ports") and port not in [p["port"] for p in rule["ports"]]:
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
                ns_ok = selector_matches(ns_sel, source_ns_labels) if ns_sel is not None else source_ns == namespace
                pod_ok = selector_matches(pod_sel, source_labels) if pod_sel is not None else True
                if ns_ok and pod_ok:
                    return True
    return False


@pytest.mark.parametrize("name", ALL)
def test_network_policies_isolate_postgres_and_redis(renders, name):
    run = renders[name]
    ns = run.extra_vars.get("ocp4_workload_litemaas_namespace", "litemaas")
    policies = run.find("NetworkPolicy")
    for p in policies:  # nothing opens the whole namespace
        for rule in p["spec"].get("ingress") or []:
            assert rule.get("from"), p["metadata"]["name"]
            for peer in rule["from"]:
                assert peer.get("podSelector") != {} or peer.get("namespaceSelector") is not None, p["metadata"]["name"]
    ns_labels = {"kubernetes.io/metadata.name": ns, **run.one("Namespace", ns)["metadata"]["labels"]}
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d, _spec in pod_specs(run)}
    pods["backup-job"] = {"app.kubernetes.io/name": "litemaas-backup", "app.kubernetes.io/instance": ns, "job-name": "litemaas-backup-2911"}
    pods["stranger"] = {"app": "debug"}
    pods["other-instance-proxy"] = {"app.kubernetes.io/name": "litellm", "app.kubernetes.io/instance": "someone-else"}
    router = ("openshift-ingress", {"kubernetes.io/metadata.name": "openshift-ingress", "policy-group.network.openshift.io/ingress": ""})

    def reach(target, port):
        inside = {src for src, labels in pods.items() if allowed(policies, ns, pods[target], labels, ns, ns_labels, port)}
        from_router = allowed(policies, ns, pods[target], {}, router[0], router[1], port)
        return inside, from_router

    assert reach("litellm-postgres", 5432) == ({"litellm", "litellm-backend", "backup-job"}, False)
    assert reach("litellm-redis", 6379) == ({"litellm"}, False)
    assert reach("litellm", 4000) == ({"litellm-backend"}, True)
    assert reach("litellm-backend", 8080) == ({"litellm-frontend"}, True)
    assert reach("litellm-frontend", 8080) == (set(), True)
    if name == "upstream_serviceaccount":
        assert allowed(policies, ns, pods["litellm"], {}, "workshop-notebooks", {"kubernetes.io/metadata.name": "workshop-notebooks"}, 4000)
    assert not allowed(policies, ns, pods["litellm"], {}, "elsewhere", {"kubernetes.io/metadata.name": "elsewhere"}, 4000)


# --------------------------------------------------------------------------------------------------------------------
# Secrets


@pytest.mark.parametrize("name", ALL)
def test_secret_values_appear_only_in_secrets(renders, name):
    run = renders[name]
    values = secret_values(run)
    assert len(values) >= 10
    oauth_secret = values["backend-secret/OAUTH_CLIENT_SECRET"]
    for doc in run.docs():
        if doc["kind"] == "Secret":
            continue
        doc = clean(doc)
        if doc["kind"] == "OAuthClient":
            # The OAuth API stores the client secret in the OAuthClient; it must be the backend's.
            assert doc.pop("secret") == oauth_secret
        text = json.dumps(doc)
        for where, value in values.items():
            if len(value) >= 16:
                assert value not in text, f"{where} leaks into {doc['kind']}/{doc['metadata']['name']}"
    # ... and never in the playbook output, even with -v.
    for where, value in values.items():
        if len(value) >= 16:
            assert value not in run.output, f"{where} printed by ansible-playbook"


def test_generated_secrets_have_the_right_shape(renders):
    values = secret_values(renders["defaults"])
    assert re.fullmatch(r"sk-[A-Za-z0-9]{48}", values["litellm-secret/LITELLM_MASTER_KEY"])
    assert re.fullmatch(r"ltm_admin_[A-Za-z0-9]{40}", values["backend-secret/ADMIN_API_KEYS"])
    generated = yaml.safe_load((renders["defaults"].directory / ".litemaas-secrets").read_text())
    assert len(generated) == 10 and len(set(generated.values())) == 10  # ten distinct secrets
    db = values["litemaas-db/DATABASE_URL"]
    assert db == f"postgresql://litemaas:{values['litemaas-db/LITEMAAS_DB_PASSWORD']}@litellm-postgres.litemaas.svc:5432/litemaas_db?sslmode=disable"
    assert values["litemaas-db/LITELLM_DATABASE_URL"].endswith("@litellm-postgres.litemaas.svc:5432/litellm_db?sslmode=disable")
    assert values["litellm-redis/REDIS_URL"] == f"redis://:{values['litellm-redis/REDIS_PASSWORD']}@litellm-redis.litemaas.svc:6379/0"
    assert f"requirepass {values['litellm-redis/REDIS_PASSWORD']}\n" in values["litellm-redis/redis.conf"]


def test_pinned_secret_is_used(renders):
    assert secret_values(renders["prebuilt_oauth_off"])["litellm-secret/LITELLM_MASTER_KEY"] == PINNED_MASTER_KEY


def test_render_secrets_file_is_private_and_matches_the_secrets(renders):
    run = renders["defaults"]
    path = run.directory / ".litemaas-secrets"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = yaml.safe_load(path.read_text())
    values = secret_values(run)
    assert stored["litellm_master_key"] == values["litellm-secret/LITELLM_MASTER_KEY"]
    assert stored["postgres_portal_password"] == values["litemaas-db/LITEMAAS_DB_PASSWORD"]
    for rel in run.files:
        mode = stat.S_IMODE((run.directory / rel).stat().st_mode)
        assert mode == (0o600 if Path(rel).name.startswith(("secret", "oauthclient")) else 0o644), rel


# --------------------------------------------------------------------------------------------------------------------
# Idempotence and removal


def test_re_render_is_byte_identical_and_changes_nothing(second_renders):
    again = second_renders["again"]
    assert again.returncode == 0, again.output[-4000:]
    assert second_renders["after"] == second_renders["before"]
    recap = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", again.output)
    assert recap and recap.group(1) == "0", again.output[-3000:]


def test_destroy_removes_what_render_created(second_renders):
    destroyed = second_renders["destroyed"]
    assert destroyed.returncode == 0, destroyed.output[-4000:]
    assert second_renders["scratch_files"] == {}


def test_switching_ha_off_prunes_stale_files(renders, second_renders):
    first = renders["ha_off"]
    assert not any("pdb" in rel for rel in first.files)
    assert any("pdb" in rel for rel in renders["defaults"].files)
    # On a copy of the HA-off directory: HA on adds the PDBs; HA off again removes them and leaves the rest as it was.
    on, off = second_renders["ha_on"], second_renders["ha_off_again"]
    assert on.returncode == 0 and "04-proxy/pdb.yaml" in on.files and "09-frontend/pdb.yaml" in on.files
    assert off.returncode == 0
    assert {k: v for k, v in second_renders["toggled_files"].items() if k.endswith(".yaml")} == first.files


# --------------------------------------------------------------------------------------------------------------------
# Component wiring


def env_of(container) -> dict:
    out = {}
    for item in container.get("env", []):
        out[item["name"]] = item.get("value", item.get("valueFrom"))
    return out


def test_backend_environment(renders):
    run = renders["defaults"]
    backend = run.one("Deployment", "litellm-backend")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(backend)
    assert backend["image"] == "quay.io/rh-aiservices-bu/litemaas-backend:0.4.0"
    assert env["NODE_ENV"] == "production" and env["PORT"] == "8080"
    # The public route: the portal hands this URL to browsers, and its Chat Playground calls it from the page.
    assert env["LITELLM_API_URL"] == "https://litellm.apps.example.com"
    assert env["OAUTH_CALLBACK_URL"] == "https://litellm-frontend.apps.example.com/api/auth/callback"
    assert env["CORS_ORIGIN"] == "https://litellm-frontend.apps.example.com"
    assert env["OAUTH_ISSUER"] == "https://oauth-openshift.apps.example.com"
    assert env["OAUTH_CLIENT_ID"] == "litemaas"
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "litemaas-db", "key": "DATABASE_URL"}}
    assert env["LITELLM_DATABASE_URL"] == {"secretKeyRef": {"name": "litemaas-db", "key": "LITELLM_DATABASE_URL"}}
    assert env["ADMIN_API_KEYS"] == {"secretKeyRef": {"name": "backend-secret", "key": "ADMIN_API_KEYS"}}
    assert env["LITELLM_API_KEY"] == {"secretKeyRef": {"name": "litellm-secret", "key": "LITELLM_MASTER_KEY"}}
    assert env["OAUTH_CLIENT_SECRET"] == {"secretKeyRef": {"name": "backend-secret", "key": "OAUTH_CLIENT_SECRET"}}
    assert "REDIS_HOST" not in env  # the portal would FLUSHALL the proxy's Redis
    # No portal backend version reads DEFAULT_USER_BUDGET_DURATION: the proxy applies the budget period of new users.
    assert "DEFAULT_USER_BUDGET_DURATION" not in env
    proxy_env = env_of(run.one("Deployment", "litellm")["spec"]["template"]["spec"]["containers"][0])
    assert proxy_env["LITEMAAS_DEFAULT_USER_BUDGET_DURATION"] == "monthly"
    frontend = run.one("Deployment", "litellm-frontend")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(frontend) == {"BACKEND_URL": "http://litellm-backend:8080"}
    assert frontend["image"] == "quay.io/rh-aiservices-bu/litemaas-frontend:0.4.0"


def test_routes_are_edge_tls_with_streaming_timeouts(renders):
    run = renders["defaults"]
    routes = {r["metadata"]["name"]: r for r in run.find("Route")}
    assert {n: (r["spec"]["host"], r["spec"]["to"]["name"], r["spec"].get("path")) for n, r in routes.items()} == {
        "litellm": ("litellm.apps.example.com", "litellm", None),
        "litellm-frontend": ("litellm-frontend.apps.example.com", "litellm-frontend", None),
        "litellm-admin": ("litellm-admin.apps.example.com", "litellm-backend", "/api"),
    }
    for r in routes.values():
        assert r["spec"]["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
        assert r["metadata"]["annotations"]["haproxy.router.openshift.io/timeout"] == "600s"


def test_oauthclient_mode(renders):
    client = renders["defaults"].one("OAuthClient", "litemaas")
    assert client["redirectURIs"] == [f"https://{h}.apps.example.com/api/auth/callback" for h in ("litellm-frontend", "litellm-admin", "litellm")]
    assert "namespace" not in client["metadata"]


def test_serviceaccount_oauth_mode(renders):
    run = renders["upstream_serviceaccount"]
    assert run.find("OAuthClient") == []
    sa = run.one("ServiceAccount", "litemaas-oauth")
    assert sa["metadata"]["annotations"]["serviceaccounts.openshift.io/oauth-redirecturi.frontend"] == (
        "https://litellm-frontend.apps.ocp.test/api/auth/callback")
    token = run.one("Secret", "litemaas-oauth-token")
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "litemaas-oauth"
    env = env_of(run.one("Deployment", "litellm-backend")["spec"]["template"]["spec"]["containers"][0])
    assert env["OAUTH_CLIENT_ID"] == "system:serviceaccount:maas:litemaas-oauth"
    assert env["OAUTH_CLIENT_SECRET"] == {"secretKeyRef": {"name": "litemaas-oauth-token", "key": "token"}}
    assert env["INITIAL_ADMIN_USERS"] == "admin,opentlc-mgr"
    assert run.one("ResourceQuota", "litemaas-quota")["spec"]["hard"]["requests.cpu"] == "8"
    claim = run.one("StatefulSet", "litellm-postgres")["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["storageClassName"] == "gp3-csi"


def test_oauth_off_renders_no_oauth_objects(renders):
    run = renders["prebuilt_oauth_off"]
    assert run.find("OAuthClient") == [] and run.find("ServiceAccount") == []
    assert run.find("ConfigMap", "litemaas-branding") == []


def test_proxy_built_in_cluster_from_the_collection_sources(renders):
    run = renders["defaults"]
    bc = run.one("BuildConfig", "litemaas-proxy")
    deployment = run.one("Deployment", "litellm")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    tag = bc["spec"]["output"]["to"]["name"].split(":", 1)[1]
    assert container["image"] == f"image-registry.openshift-image-registry.svc:5000/litemaas/litemaas-proxy:{tag}"
    # Workers from the CPU limit ("2"): one per whole CPU.
    assert container["command"] == ["litemaas-proxy", "--host", "0.0.0.0", "--port", "4000", "--workers", "2"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/liveliness"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    env = env_of(container)
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "litemaas-db", "key": "LITELLM_DATABASE_URL"}}
    assert env["REDIS_URL"] == {"secretKeyRef": {"name": "litellm-redis", "key": "REDIS_URL"}}
    assert env["LITELLM_MASTER_KEY"] == {"secretKeyRef": {"name": "litellm-secret", "key": "LITELLM_MASTER_KEY"}}
    # The build context is exactly the proxy sources (no caches, no tests), one ConfigMap per directory.
    source = run.directory.parent / "proxy-src"
    configmaps = {c["metadata"]["name"]: c for c in run.find("ConfigMap") if c["metadata"]["name"].startswith("litemaas-proxy-src")}
    rebuilt = {}
    for ref in bc["spec"]["source"]["configMaps"]:
        for fname, content in configmaps[ref["configMap"]["name"]]["data"].items():
            rebuilt[str(Path(ref.get("destinationDir", "")) / fname)] = content
    # Exactly what the collection artifact ships under files/proxy/ (galaxy.yml build_ignore), without the tests.
    ignore = yaml.safe_load((REPO / "galaxy.yml").read_text())["build_ignore"]

    def shipped(rel: Path) -> bool:
        paths = [str(Path("files/proxy", *rel.parts[:i])) for i in range(1, len(rel.parts) + 1)]
        return not any(fnmatch.fnmatch(p, pattern) for p in paths for pattern in ignore) and not any(part.startswith(".") for part in rel.parts)

    expected = {str(p.relative_to(source)): p.read_text() for p in source.rglob("*")
                if p.is_file() and shipped(p.relative_to(source)) and p.relative_to(source).parts[0] != "tests"}
    assert "tests/test_nothing.py" not in rebuilt and "litemaas_proxy/app.py" in rebuilt
    assert not [f for f in rebuilt if "egg-info" in f or f.startswith(("build/", "dist/", ".")) or f.endswith(".orig")]
    assert rebuilt == expected
    assert bc["spec"]["strategy"]["type"] == "Docker" and bc["spec"]["source"]["dockerfile"]


def test_proxy_allows_the_portal_origin_for_browsers(renders):
    from litemaas_proxy.config import load_settings

    def origins(name):
        env = env_of(renders[name].one("Deployment", "litellm")["spec"]["template"]["spec"]["containers"][0])
        return env.get("LITEMAAS_CORS_ALLOW_ORIGINS")

    # The portal's Chat Playground calls the proxy from the portal's origin; extra origins are added to it.
    assert origins("defaults") == "https://litellm-frontend.apps.example.com"
    assert origins("prebuilt_oauth_off") == "https://litellm-frontend.apps.example.com,https://chat.example.com"
    # The proxy reads the rendered value as it is.
    assert load_settings(None, env={"LITEMAAS_CORS_ALLOW_ORIGINS": origins("prebuilt_oauth_off")}).cors_allow_origins == (
        "https://litellm-frontend.apps.example.com", "https://chat.example.com")
    # Upstream LiteLLM allows any origin and reads no such variable.
    assert origins("upstream_serviceaccount") is None


def test_proxy_workers_and_listen_backlog(renders):
    def proxy_container(name):
        return renders[name].one("Deployment", "litellm")["spec"]["template"]["spec"]["containers"][0]

    # Default: workers from the CPU limit; the backlog is the proxy's default, said explicitly.
    assert env_of(proxy_container("defaults"))["LITEMAAS_LISTEN_BACKLOG"] == "4096"
    # A CPU limit of 1500m gives one worker (whole CPUs only).
    assert proxy_container("ha_off")["command"][5:7] == ["--workers", "1"]
    # Given explicitly, both are used as they are.
    container = proxy_container("prebuilt_oauth_off")
    assert container["command"][5:7] == ["--workers", "3"]
    assert env_of(container)["LITEMAAS_LISTEN_BACKLOG"] == "1024"
    # The grace period covers the proxy's shutdown budget with its default flush timeout (40 s).
    from litemaas_proxy.cli import shutdown_budget
    from litemaas_proxy.config import Settings

    assert shutdown_budget(Settings()) < 45
    assert renders["defaults"].one("Deployment", "litellm")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45
    assert renders["upstream_serviceaccount"].one("Deployment", "litellm")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30


def test_proxy_spend_journal_outlives_a_container_restart(renders):
    """The spend journal is on an emptyDir (it lives as long as the pod, so a restarted container replays it), and the
    proxy writes it there (its root file system is read-only)."""
    pod = renders["defaults"].one("Deployment", "litellm")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert env_of(container)["LITEMAAS_SPILL_DIR"] == "/var/lib/litemaas/spend"
    assert {"name": "spend-journal", "mountPath": "/var/lib/litemaas/spend"} in container["volumeMounts"]
    assert {"name": "spend-journal", "emptyDir": {}} in pod["volumes"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_prebuilt_proxy_image(renders):
    run = renders["prebuilt_oauth_off"]
    assert run.find("BuildConfig") == [] and run.find("ImageStream") == []
    assert run.one("Deployment", "litellm")["spec"]["template"]["spec"]["containers"][0]["image"] == "quay.io/example/litemaas-proxy:1.2.3"


def test_proxy_config_file(renders):
    run = renders["prebuilt_oauth_off"]
    config = yaml.safe_load(run.one("ConfigMap", "litemaas-proxy-config")["data"]["config.yaml"])
    assert config == {"router_settings": {"routing_strategy": "least-busy", "cooldown_time": 30}, "litellm_settings": {"metrics_key_alias": True}}
    pod = run.one("Deployment", "litellm")["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["command"][-2:] == ["--config", "/etc/litemaas/config.yaml"]
    assert {"name": "config", "mountPath": "/etc/litemaas", "readOnly": True} in container["volumeMounts"]
    assert {"name": "config", "configMap": {"name": "litemaas-proxy-config"}} in pod["spec"]["volumes"]
    # The pod template carries the config's hash, so a changed config rolls the proxy.
    assert len(pod["metadata"]["annotations"]["litemaas.rhpds.io/config-sha256"]) == 64
    # Without a config (the default) there is no ConfigMap and no flag.
    default = renders["defaults"]
    assert default.find("ConfigMap", "litemaas-proxy-config") == []
    assert "--config" not in default.one("Deployment", "litellm")["spec"]["template"]["spec"]["containers"][0]["command"]


def test_upstream_litellm_mode(renders):
    run = renders["upstream_serviceaccount"]
    assert run.find("BuildConfig") == []
    container = run.one("Deployment", "litellm")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "quay.io/rh-aiservices-bu/litellm-non-root:main-v1.81.0-stable-custom"
    assert "command" not in container
    env = env_of(container)
    assert env["STORE_MODEL_IN_DB"] == "True" and env["DISABLE_SCHEMA_UPDATE"] == "false"
    assert env["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "litellm-redis", "key": "REDIS_PASSWORD"}}
    assert env["LITELLM_SALT_KEY"] == {"secretKeyRef": {"name": "litellm-secret", "key": "LITELLM_SALT_KEY"}}


def test_postgres_creates_both_databases(renders):
    run = renders["defaults"]
    script = run.one("ConfigMap", "litemaas-postgres-init")["data"]["10-litemaas-databases.sh"]
    assert "CREATE DATABASE litemaas_db OWNER" in script and "CREATE DATABASE litellm_db OWNER" in script
    sts = run.one("StatefulSet", "litellm-postgres")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    mounts = {m["mountPath"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert "/docker-entrypoint-initdb.d" in mounts


def test_user_info_names_urls_and_secret_locations(renders):
    out = renders["defaults"].output
    assert "LiteMaaS portal: https://litellm-frontend.apps.example.com" in out
    assert "Secret litemaas/litellm-secret" in out and "Secret litemaas/backend-secret" in out


def test_invalid_variables_fail_with_a_clear_message(render_env, work_dir):
    from tests.roles.conftest import run_playbook

    run = run_playbook(render_env, "deploy.yml", work_dir / "deploy-role" / "invalid",
                       {"ocp4_workload_litemaas_ha_backend_replicas": 2}, "invalid")
    assert run.returncode != 0
    assert "the backend must run 1 replica while OAuth is on" in run.output


# --------------------------------------------------------------------------------------------------------------------
# Role metadata


def test_argument_specs_match_defaults_and_every_default_is_commented():
    defaults_text = (ROLE / "defaults" / "main.yml").read_text()
    defaults = yaml.safe_load(defaults_text)
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(specs) == set(defaults)
    for name, spec in specs.items():
        assert spec.get("description"), name
        if "default" in spec:
            assert spec["default"] == defaults[name], name
    lines = defaults_text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^ocp4_workload_litemaas_\w+:", line):
            assert lines[i - 1].startswith("#"), f"no comment above {line}"
    doc = (REPO / "docs" / "deploy-role.md").read_text()
    for name in defaults:
        assert f"`{name}`" in doc, f"{name} missing from docs/deploy-role.md"

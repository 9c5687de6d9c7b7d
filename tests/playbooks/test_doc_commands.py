"""Every command line written in the docs, run exactly as written (tests/support/doc_commands.py finds them).

Each command the docs write is named here, once: in RUN (run by a test below, which checks what it should have done),
in CANNOT_RUN (with the reason it cannot run on this machine) or in NOT_RUN_YET (with what running it needs; its test
is skipped and says so). A new command line in the docs that none of them names fails
``test_every_documented_command_is_named_here``, and so does a name that no longer is in the docs.

The commands run through ``bash -c`` as a reader pastes them, in a working directory of their own, with the
environment they need: the in-memory API server (tests/support/fake_k8s.py) named by ``$HOME/.kube/config``, which is
where ``kubernetes.core`` and ``oc`` look; an inventory with what a cluster here lacks (routes no DNS resolves, no image
build); this checkout as ``rhpds.litemaas`` on the collections path (``ansible_env``, so the file also runs with the
oldest supported ansible-core, tests/support/ansible_core.py).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.playbooks.conftest import REPO, load_docs
from tests.support.doc_commands import documented_commands, inventory, sh
from tests.support.galaxy_server import GalaxyServer

NS = "litemaas"

# ---------------------------------------------------------------- what is run here, and what cannot be

# {command: the test that runs it as written}
RENDER = "test_render_commands_write_every_manifest"
INSTALL = "test_install_commands_install_the_collection"
CLUSTER = "tests/playbooks/test_doc_commands_cluster.py::test_cluster_commands_deploy_operate_and_destroy"
AGENTS = "tests/proxy/test_agents_doc.py::test_every_command_block_runs_as_written"
LOCAL = "tests/integration/local/test_local_platform.py::test_first_run_starts_everything_and_answers_each_key"
LOCAL_DOWN = "tests/integration/local/test_local_platform.py::test_down_stops_every_process"
OC = "tests/playbooks/test_doc_commands_oc.py::"
DAY2 = "tests/playbooks/test_doc_commands_day2.py::"
JOBS = "tests/playbooks/test_doc_commands_jobs.py::"
JOBS_RUN_NOW = JOBS + "test_key_cleanup_once_now_runs_the_cronjob_as_a_job_and_shows_its_summary"
JOBS_RESTORE = JOBS + "test_restore_commands_stop_the_writers_restore_and_start_them_again"
JOBS_KSERVE = JOBS + "test_model_serving_commands_wait_until_kserve_reports_every_model_ready"
QUICK_START = "tests/playbooks/test_doc_commands_quickstart.py::test_quick_start_installs_the_proxy_and_runs_it_with_the_database_and_redis_written"
MON = "tests/playbooks/test_doc_commands_monitoring.py::"
MON_INSTALL = MON + "test_monitoring_commands_install_the_monitors_rules_and_grafana_and_a_rerun_changes_nothing"
MON_PREDICTORS = MON + "test_predictor_commands_list_the_models_their_pods_and_why_one_is_pending"
MON_GRAFANA = MON + "test_grafana_commands_print_its_address_and_admin_password"
MON_SA = MON + "test_serviceaccount_mode_check_prints_the_redirect_uris_of_the_routes"
SUITES = "tests/playbooks/test_doc_commands_suites.py::"
EXEC = "tests/playbooks/test_doc_commands_exec.py::"
EXEC_PSQL = EXEC + "test_psql_portal_selects_show_the_portals_rows"
BENCH = "tests/reliability/test_bench_doc_lines.py::"
RUN = {
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_render_dir=/tmp/litemaas": RENDER,
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_render_dir=/tmp/litemaas-render -e ocp4_workload_litemaas_namespace=litemaas"
    " -e ocp4_workload_litemaas_cluster_domain=apps.cluster.example.com": RENDER,
    "ls /tmp/litemaas-render": RENDER,
    "ansible-playbook rhpds.litemaas.model_serving -e ocp4_workload_litemaas_render_dir=/tmp/models -e @models.yml": RENDER,
    "ansible-galaxy collection build . && ansible-galaxy collection install rhpds-litemaas-*.tar.gz": INSTALL,
    "pip install kubernetes": INSTALL,
    "ansible-galaxy collection install rhpds.litemaas": INSTALL,
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas --check --diff": CLUSTER,
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas": CLUSTER,
    "ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_namespace=litemaas"
    """ -e '{"ocp4_workload_litemaas_initial_admin_users": ["alice"]}'""": CLUSTER,
    "ansible-playbook rhpds.litemaas.upgrade -e ocp4_workload_litemaas_namespace=litemaas -e ocp4_workload_litemaas_version=0.5.0"
    " -e ocp4_workload_litemaas_proxy_image=quay.io/example/litemaas-proxy:0.2.0": CLUSTER,
    """ansible-playbook rhpds.litemaas.scale -e '{"litemaas_scale": {"proxy": 5, "frontend": 3}}'""": CLUSTER,
    "ansible-playbook rhpds.litemaas.backup": CLUSTER,
    "ansible-playbook rhpds.litemaas.backup -e ocp4_workload_litemaas_namespace=litemaas": CLUSTER,
    """ansible-playbook rhpds.litemaas.backup -e '{"litemaas_backup_schedule": "0 3 * * *"}'""": CLUSTER,
    """ansible-playbook rhpds.litemaas.backup -e '{"litemaas_backup_schedule": "0 3 * * *"}' -e litemaas_backup_keep=14""": CLUSTER,
    "ansible-playbook rhpds.litemaas.key_cleanup": CLUSTER,
    "ansible-playbook rhpds.litemaas.key_cleanup -e ocp4_workload_litemaas_namespace=litemaas": CLUSTER,
    "ansible-playbook rhpds.litemaas.key_cleanup -e litemaas_key_cleanup_state=absent": CLUSTER,
    "ansible-playbook rhpds.litemaas.monitoring -e ocp4_workload_litemaas_monitoring_action=destroy": CLUSTER,
    "ansible-playbook rhpds.litemaas.destroy -e ocp4_workload_litemaas_namespace=litemaas": CLUSTER,
    "ansible-playbook rhpds.litemaas.model_serving -e @models.yml -e litemaas_model_serving_render_dir=\"$PWD/gitops\""
    " -e litemaas_model_serving_argocd_enabled=true -e litemaas_model_serving_argocd_repo_url=https://git.example.com/platform/models.git":
        "tests/playbooks/test_model_serving.py::test_gitops_command_line_of_the_docs_renders_the_example",
    # docs/agents.md: its shell blocks run as written against the real proxy (the stub model server behind it).
    'export OPENAI_BASE_URL="$LITEMAAS_URL/v1" OPENAI_API_KEY="$LITEMAAS_KEY" OPENAI_AGENTS_DISABLE_TRACING=1': AGENTS,
    """python3 -c 'import os, openai; print(openai.OpenAI().responses.create(model=os.environ["LITEMAAS_MODEL"], input="Say hello").output_text)'""":
        AGENTS,
    'export ANTHROPIC_BASE_URL="$LITEMAAS_URL" ANTHROPIC_AUTH_TOKEN="$LITEMAAS_KEY" ANTHROPIC_MODEL="$LITEMAAS_MODEL"'
    ' ANTHROPIC_DEFAULT_HAIKU_MODEL="$LITEMAAS_MODEL"': AGENTS,
    """python3 -c 'import os, anthropic; print(anthropic.Anthropic().messages.create(model=os.environ["ANTHROPIC_MODEL"], max_tokens=64,"""
    """ messages=[{"role": "user", "content": "Say hello"}]).content[0].text)'""": AGENTS,
    # docs/local.md: the local platform, with the stand-in model server at the doc's address.
    "ansible-playbook rhpds.litemaas.local -e litemaas_local_model_url=http://127.0.0.1:8000/v1 -e litemaas_local_model_name=my-model": LOCAL,
    "ansible-playbook rhpds.litemaas.local -e litemaas_local_state=absent": LOCAL_DOWN,
    "bash scripts/local.sh check": "tests/integration/local/test_local_platform.py::test_check_asks_again_through_the_proxy_with_each_key",
    "bash scripts/local.sh status": "tests/integration/local/test_local_platform.py::test_status_names_each_process_and_shows_the_answers",
    "bash scripts/local.sh down": LOCAL_DOWN,
    # bench/README.md: the checkout's bootstrap, run again where the test command already ran it.
    "bash -c '. scripts/lib.sh && bootstrap'": "test_bootstrap_command_reuses_what_is_installed",
    # bench/README.md's smoke run (our proxy and LiteLLM side by side; bars may fail on a loaded machine, no request may).
    ".venv/bin/python bench/run.py --quick": "tests/reliability/test_bench_doc.py::test_quick_benchmark_runs_as_written_and_answers_every_request",
    # The documented oc lines: run with Debian's kubectl as oc against the in-memory API server after a deploy.
    "ADMIN=https://$(oc get route litellm-admin -n $NS -o jsonpath='{.spec.host}')": OC + "test_variables_of_troubleshooting_are_the_clusters_values",
    "ADMIN_KEY=$(oc get secret backend-secret -n $NS -o jsonpath='{.data.ADMIN_API_KEYS}' | base64 -d | cut -d, -f1)": OC + "test_variables_of_troubleshooting_are_the_clusters_values",  # noqa: E501
    "API=https://$(oc get route litellm -n $NS -o jsonpath='{.spec.host}')": OC + "test_variables_of_troubleshooting_are_the_clusters_values",
    "MASTER=$(oc get secret litellm-secret -n $NS -o jsonpath='{.data.LITELLM_MASTER_KEY}' | base64 -d)": OC + "test_variables_of_troubleshooting_are_the_clusters_values",  # noqa: E501
    'NS=litemaas': OC + "test_variables_of_troubleshooting_are_the_clusters_values",
    "REDIS_PASSWORD=$(oc get secret litellm-redis -n $NS -o jsonpath='{.data.REDIS_PASSWORD}' | base64 -d)": OC + "test_variables_of_troubleshooting_are_the_clusters_values",  # noqa: E501
    "oc -n openshift-monitoring create configmap cluster-monitoring-config --from-literal=config.yaml='enableUserWorkload: true'": OC + "test_user_workload_monitoring_is_switched_on",  # noqa: E501
    "oc -n openshift-monitoring get configmap cluster-monitoring-config -o jsonpath='{.data.config\\.yaml}'": OC + "test_user_workload_monitoring_is_switched_on",  # noqa: E501
    'oc -n openshift-user-workload-monitoring get pods': OC + "test_user_workload_monitoring_is_switched_on",
    'oc annotate route litellm -n $NS haproxy.router.openshift.io/timeout=900s --overwrite': OC + "test_route_timeout_is_shown_and_annotated",
    "oc get deploy litellm-backend -n $NS -o jsonpath='{.spec.template.spec.containers[0].env}' | tr ',' '\\n' | grep -A1 OAUTH_CALLBACK_URL": OC + "test_image_and_oauth_checks_print_what_is_deployed",  # noqa: E501
    'oc get deploy litellm-frontend litellm-backend -n $NS -o jsonpath=\'{range .items[*]}{.metadata.name}{": "}{.spec.template.spec.initContainers[*].image}{" "}{.spec.template.spec.containers[*].image}{"\\n"}{end}\'': OC + "test_image_and_oauth_checks_print_what_is_deployed",  # noqa: E501
    'oc get deploy,statefulset -n $NS': OC + "test_deployment_check_lists_every_workload_ready",
    'oc get networkpolicy -n $NS': OC + "test_pod_restarts_volumes_jobs_and_policies_are_listed",
    "oc get oauthclient $NS -o jsonpath='{.redirectURIs}'; echo": OC + "test_image_and_oauth_checks_print_what_is_deployed",
    'oc get pods -n $NS -o custom-columns=NAME:.metadata.name,RESTARTS:.status.containerStatuses[0].restartCount,LAST:.status.containerStatuses[0].lastState.terminated.reason': OC + "test_pod_restarts_volumes_jobs_and_policies_are_listed",  # noqa: E501
    'oc get pvc -n $NS; oc describe pvc data-litellm-postgres-0 -n $NS | tail': OC + "test_pod_restarts_volumes_jobs_and_policies_are_listed",
    'oc get route -n $NS -o custom-columns=NAME:.metadata.name,TIMEOUT:.metadata.annotations.haproxy\\\\.router\\\\.openshift\\\\.io/timeout': OC + "test_route_timeout_is_shown_and_annotated",  # noqa: E501
    'oc get sts litellm-postgres -n $NS; oc logs -n $NS litellm-postgres-0 --tail=50': OC + "test_pod_restarts_volumes_jobs_and_policies_are_listed",
    'oc logs -n $NS deploy/litellm --previous | tail -50': OC + "test_proxy_logs_and_restart",
    "oc logs -n $NS deploy/litellm | grep -i -E 'migrat|schema|database'": OC + "test_proxy_logs_and_restart",
    'oc logs -n $NS deploy/litellm-backend | grep -i oauth | tail': OC + "test_proxy_logs_and_restart",
    'oc rollout restart deploy/litellm -n $NS && oc rollout status deploy/litellm -n $NS': OC + "test_proxy_logs_and_restart",
    'oc rollout status deploy/litellm-frontend -n $NS': OC + "test_image_and_oauth_checks_print_what_is_deployed",
    # Day-2 lines reaching the proxy and the portal database (tests/playbooks/test_doc_commands_day2.py).
    "ansible-playbook rhpds.litemaas.key_sync": DAY2 + "test_key_sync_commands_list_fix_and_import",
    "ansible-playbook rhpds.litemaas.key_sync -e litemaas_key_sync_dry_run=true": DAY2 + "test_key_sync_commands_list_fix_and_import",
    "ansible-playbook rhpds.litemaas.key_sync -e litemaas_key_sync_import_keys=true -e litemaas_key_sync_alias_prefix=virtkey-":
        DAY2 + "test_key_sync_commands_list_fix_and_import",
    """ansible-playbook rhpds.litemaas.portal_admins -e '{"litemaas_portal_admins": [ {"email": "lead@example.com"},"""
    """ {"username": "auditor", "role": "adminReadonly"}, {"username": "former-lead", "state": "absent"}]}'""":
        DAY2 + "test_portal_admins_commands_grant_and_revoke",
    """ansible-playbook rhpds.litemaas.portal_admins -e '{"litemaas_portal_admins": [{"email": "lead@example.com"},"""
    """ {"username": "auditor", "role": "adminReadonly"}, {"username": "former-lead", "state": "absent"}]}'""":
        DAY2 + "test_portal_admins_commands_grant_and_revoke",
    "ansible-playbook rhpds.litemaas.models -e @models.yml --check --diff": DAY2 + "test_models_commands_register_the_list_and_the_served_models",
    "ansible-playbook rhpds.litemaas.models -e @models.yml": DAY2 + "test_models_commands_register_the_list_and_the_served_models",
    "ansible-playbook rhpds.litemaas.models -e litemaas_models_discover=true": DAY2 + "test_models_commands_register_the_list_and_the_served_models",
    "ansible-playbook rhpds.litemaas.capacity_check -e capacity_check_model=granite-3-8b -e capacity_check_attendees=60":
        DAY2 + "test_capacity_check_commands_report_and_clean_up",
    "ansible-playbook rhpds.litemaas.capacity_check -e capacity_check_model=granite-3-8b -e capacity_check_attendees=60"
    " -e capacity_check_requests_per_attendee=3 -e capacity_check_ttft_p95_threshold=3": DAY2 + "test_capacity_check_commands_report_and_clean_up",
    "ansible-playbook rhpds.litemaas.workshop_keys -e guid=abc12 -e num_users=30 -e litellm_url=$API -e litellm_master_key=$MASTER"
    """ -e '{"ocp4_workload_litellm_virtual_keys_models": ["granite-3-8b"]}' -e ocp4_workload_litellm_virtual_keys_rpm_limit=30"""
    " -e ocp4_workload_litellm_virtual_keys_max_budget=5": DAY2 + "test_workshop_keys_commands_provision_extend_and_destroy",
    "ansible-playbook rhpds.litemaas.workshop_keys -e ACTION=extend -e guid=abc12 -e litellm_url=$API -e litellm_master_key=$MASTER"
    " -e ocp4_workload_litellm_virtual_keys_extend_duration=2d": DAY2 + "test_workshop_keys_commands_provision_extend_and_destroy",
    "ansible-playbook rhpds.litemaas.workshop_keys -e ACTION=extend -e guid=abc12 -e litellm_url=$API -e litellm_master_key=$MASTER"
    " -e ocp4_workload_litellm_virtual_keys_expires=2030-12-31T18:00:00Z": DAY2 + "test_workshop_keys_commands_provision_extend_and_destroy",
    "ansible-playbook rhpds.litemaas.workshop_keys -e ACTION=destroy -e guid=abc12 -e litellm_url=$API -e litellm_master_key=$MASTER":
        DAY2 + "test_workshop_keys_commands_provision_extend_and_destroy",
    "curl -s $API/health/readiness": DAY2 + "test_curl_commands_read_the_proxy",
    'curl -s $API/v1/models -H "Authorization: Bearer $MASTER"': DAY2 + "test_curl_commands_read_the_proxy",
    "read -rsp 'Key: ' KEY; echo": DAY2 + "test_curl_commands_read_the_proxy",
    'curl -s $API/key/info -H "Authorization: Bearer $KEY" | python3 -m json.tool': DAY2 + "test_curl_commands_read_the_proxy",
    "ALIAS=virtkey-abc12-user1": DAY2 + "test_curl_commands_read_the_proxy",
    'curl -s "$API/key/list?key_alias=$ALIAS&return_full_object=true" -H "Authorization: Bearer $MASTER"': DAY2 + "test_curl_commands_read_the_proxy",
    """curl -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d '{"http_sources": [{"url": "https://arxiv.org/pdf/2408.09869"}]}'"""
    " $API/docling/v1/convert/source": DAY2 + "test_curl_commands_read_the_proxy",
    'curl -H "Authorization: Bearer $KEY" -F files=@report.pdf $API/docling/v1/convert/file': DAY2 + "test_curl_commands_read_the_proxy",
    # Jobs and KServe: tests/playbooks/test_doc_commands_jobs.py (key cleanup once now, restore, model serving).
    "ansible-playbook rhpds.litemaas.key_cleanup -e litemaas_key_cleanup_run_now=true": JOBS_RUN_NOW,
    """ansible-playbook rhpds.litemaas.key_cleanup -e '{"litemaas_key_cleanup_alias_prefixes": ["virtkey-"]}' -e litemaas_key_cleanup_run_now=true""":
        JOBS_RUN_NOW,
    "ansible-playbook rhpds.litemaas.restore -e litemaas_restore_backup=20260301-020000 -e litemaas_restore_confirm=true": JOBS_RESTORE,
    "ansible-playbook rhpds.litemaas.restore -e litemaas_restore_backup=20260301-030000 -e litemaas_restore_confirm=true": JOBS_RESTORE,
    "ansible-playbook rhpds.litemaas.restore -e litemaas_restore_backup=pre-upgrade-20260301-101500 -e litemaas_restore_confirm=true": JOBS_RESTORE,
    """ansible-playbook rhpds.litemaas.model_serving -e '{"litemaas_model_serving_models": ["granite-3-2-8b-instruct"]}'""": JOBS_KSERVE,
    "ansible-playbook rhpds.litemaas.model_serving -e @models.yml": JOBS_KSERVE,
    # The proxy's quick start and the one-run deploy with models: tests/playbooks/test_doc_commands_quickstart.py.
    "pip install ./files/proxy": QUICK_START,
    "export DATABASE_URL=postgresql://user:pw@db:5432/litellm_db": QUICK_START,
    "export REDIS_URL=redis://:pw@redis:6379/0": QUICK_START,
    """export LITELLM_MASTER_KEY=sk-$(python3 -c 'import secrets; print(secrets.token_hex(16))')""": QUICK_START,
    "litemaas-proxy --host 0.0.0.0 --port 4000": QUICK_START,
    "ansible-playbook rhpds.litemaas.deploy -e @catalog-item.yml":
        "tests/playbooks/test_doc_commands_quickstart.py::test_catalog_item_deploys_the_platform_serves_and_registers_the_models",
    # Monitoring, KServe's predictors, the serviceaccount OAuth check and a failed Job's log: tests/playbooks/test_doc_commands_monitoring.py.
    """ansible-playbook rhpds.litemaas.monitoring -e '{"ocp4_workload_litemaas_monitoring_model_servers": [{"runtime": "vllm", "namespace": "llm-hosting"}]}'"""
    " -e ocp4_workload_litemaas_monitoring_gpu_enabled=true": MON_INSTALL,
    """ansible-playbook rhpds.litemaas.monitoring -e ocp4_workload_litemaas_namespace=litemaas -e '{"ocp4_workload_litemaas_monitoring_model_servers":"""
    """ [ {"runtime": "vllm", "namespace": "llm-hosting", "inference_services": ["granite-3-8b", "llama-3-1-8b"]},"""
    """ {"runtime": "openvino", "namespace": "ovms"}]}'"""
    " -e ocp4_workload_litemaas_monitoring_gpu_enabled=true": MON_INSTALL,
    """ansible-playbook rhpds.litemaas.monitoring -e ocp4_workload_litemaas_namespace=litemaas -e '{"ocp4_workload_litemaas_monitoring_model_servers":"""
    """ [{"runtime": "vllm", "namespace": "llm-hosting"}]}'""": MON_INSTALL,
    'oc -n llm-hosting get servicemonitor': MON_INSTALL,
    'echo "https://$(oc -n litemaas get route litemaas-grafana -o jsonpath=\'{.spec.host}\')"': MON_GRAFANA,
    "oc -n litemaas get secret litemaas-grafana-admin -o jsonpath='{.data.GF_SECURITY_ADMIN_PASSWORD}' | base64 -d; echo":
        MON_GRAFANA,
    'oc -n llm-hosting get svc -l component=predictor --show-labels': MON + "test_predictor_services_are_listed_with_the_labels_the_monitors_select",
    'oc get inferenceservice -A; oc get pods -n llm-hosting -l component=predictor': MON_PREDICTORS,
    'oc describe pod -n llm-hosting $POD | tail -20': MON_PREDICTORS,
    "oc get sa litemaas-oauth -n $NS -o jsonpath='{.metadata.annotations}'; echo": MON_SA,
    'oc get jobs -n $NS; oc logs -n $NS job/$JOB': MON + "test_job_commands_list_the_jobs_and_show_the_failed_ones_log",
    # test runs: the test command's own lines, and the cluster suite against the in-memory API server
    "bash scripts/test.sh": SUITES + "test_the_test_command_runs_the_documented_test_lines",
    ".venv/bin/python -m pytest -q -n 2 --dist loadfile tests/reliability --ignore=tests/reliability/test_schemathesis.py":
        SUITES + "test_the_test_command_runs_the_documented_test_lines",
    ".venv/bin/python -m pytest -q tests/reliability/test_schemathesis.py": SUITES + "test_the_test_command_runs_the_documented_test_lines",
    "bash scripts/test.sh tests/integration/local": SUITES + "test_the_test_command_runs_the_documented_test_lines",
    "KUBECONFIG=$HOME/.kube/config bash scripts/test.sh tests/cluster":
        SUITES + "test_cluster_suite_line_runs_the_whole_sequence_against_the_cluster_named",
    "bash scripts/local.sh": "tests/integration/local/test_local_platform.py::test_local_sh_as_written_uses_the_model_url_it_remembers",
    # oc exec, top, edit: tests/playbooks/test_doc_commands_exec.py (pods/exec over SPDY into the stand-in container runtime).
    'oc -n litemaas exec deploy/litellm -- python -c "import urllib.request as u; print(u.urlopen(\'http://127.0.0.1:4000/metrics\').read().decode())"'
    " | grep -v '^#' | head": EXEC + "test_metrics_line_prints_the_proxys_metric_lines",
    'oc exec -n $NS deploy/litellm-redis -- redis-cli -a "$REDIS_PASSWORD" --no-auth-warning FLUSHALL': EXEC + "test_flush_line_empties_the_proxys_redis",
    'psql_portal() { oc exec -i -n $NS litellm-postgres-0 -- psql -U postgres -d litemaas_db "$@"; }': EXEC_PSQL,
    'psql_proxy() { oc exec -i -n $NS litellm-postgres-0 -- psql -U postgres -d litellm_db "$@"; }':
        EXEC + "test_psql_functions_read_sql_from_stdin_and_reach_the_proxys_database",
    'psql_portal -c "SELECT id FROM models WHERE id = \'granite-3-8b\'"': EXEC_PSQL,
    'psql_portal -c "SELECT id, availability FROM models ORDER BY id"': EXEC_PSQL,
    'psql_portal -c "SELECT litellm_key_alias, is_active, sync_status, expires_at FROM api_keys WHERE sync_status <> \'synced\' OR expires_at < now()"':
        EXEC_PSQL,
    "oc adm top pods -n $NS": EXEC + "test_top_lists_each_pods_cpu_and_memory",
    "oc -n openshift-monitoring edit configmap cluster-monitoring-config": EXEC + "test_edit_turns_user_workload_monitoring_on_and_keeps_the_rest",
    # portal backend stand-in: tests/playbooks/test_doc_commands_portal.py (tests/support/portal_backend.py).
    'curl -s $ADMIN/api/v1/health | python3 -m json.tool':
        "tests/playbooks/test_doc_commands_portal.py::test_health_line_prints_every_check_healthy_and_the_proxy_down_as_unhealthy",
    'curl -s -X POST $ADMIN/api/v1/models/sync -H "Authorization: Bearer $ADMIN_KEY" -H \'Content-Type: application/json\''
    ' -d \'{"forceUpdate": false, "markUnavailable": true}\'':
        "tests/playbooks/test_doc_commands_portal.py::test_sync_line_copies_the_proxys_models_and_marks_a_deleted_one_unavailable",
    # benchmarks: tests/reliability/test_bench_doc_lines.py runs each line as written with LITEMAAS_BENCH_SCALE set.
    ".venv/bin/python bench/run.py": BENCH + "test_full_benchmark_line_measures_every_target_at_each_concurrency",
    ".venv/bin/python bench/run.py --duration 20 --warmup 5 --conc 1,16": BENCH + "test_duration_warmup_and_concurrency_options_are_taken",
    ".venv/bin/python bench/run.py --request stream": BENCH + "test_stream_request_line_drives_streaming_chats",
    ".venv/bin/python bench/run.py --rounds 3": BENCH + "test_rounds_line_repeats_the_matrix_and_shows_each_rows_median",
    ".venv/bin/python bench/run.py --skip-litellm": BENCH + "test_skip_litellm_line_measures_direct_and_ours_without_ratios",
    ".venv/bin/python bench/burst.py": BENCH + "test_full_burst_line_runs_both_sizes_with_both_worker_counts_and_litellm",
    ".venv/bin/python bench/burst.py --n 500 --skip-litellm --keep": BENCH + "test_small_burst_line_skips_litellm_and_keeps_its_work_directory",
    ".venv/bin/python bench/load.py": BENCH + "test_load_line_runs_two_proxies_and_spend_matches_to_the_token",
    ".venv/bin/python bench/load.py --duration 60 --concurrency 32 --keys 200 --proxies 2": BENCH + "test_load_line_with_the_defaults_written_out",
    ".venv/bin/python bench/load.py --proxies 1 --workers 2": BENCH + "test_load_line_with_two_workers_of_one_proxy",
    ".venv/bin/python bench/keys_bench.py --count 1000 --parallelism 16":
        BENCH + "test_keys_line_creates_every_key_both_ways_and_the_rerun_changes_nothing",
}

# {command: why it cannot run on this machine}: none now; a line added here must say why.
CANNOT_RUN: dict = {
}

# Documented but not run by a test yet, one by one (so that a new command line in the docs is not taken in silently):
# {command: what running it here needs}.
NOT_RUN_YET: dict = {
}


def test_every_documented_command_is_named_here():
    documented = documented_commands()
    named = set(RUN) | set(CANNOT_RUN) | set(NOT_RUN_YET)
    new = sorted(k for k in documented if k not in named)
    assert not new, f"command lines in the docs that this test does not know: {new}"
    stale = sorted(k for k in named if k not in documented)
    assert not stale, f"named here but no longer in the docs: {stale}"
    assert not set(RUN) & set(CANNOT_RUN) and not set(RUN) & set(NOT_RUN_YET) and not set(CANNOT_RUN) & set(NOT_RUN_YET)
    for test in set(RUN.values()):
        path, dummy, name = test.rpartition("::")
        assert f"\ndef {name}(" in (REPO / (path or "tests/playbooks/test_doc_commands.py")).read_text(), f"{test} runs no command: it does not exist"


@pytest.mark.parametrize("key", sorted(NOT_RUN_YET))
def test_documented_command_not_run_yet(key):
    pytest.skip(f"not run by a test yet: needs {NOT_RUN_YET[key]} ({', '.join(documented_commands()[key].places)})")


# ---------------------------------------------------------------- render mode (fixed paths under /tmp, as written)

def _render_manifests(root: Path) -> dict:
    return {str(p.relative_to(root)): load_docs(p) for p in sorted(root.rglob("*.yaml"))}


TMP_DIRS = ("/tmp/litemaas", "/tmp/litemaas-render", "/tmp/models")


def test_render_commands_write_every_manifest(ansible_env, tmp_path):
    env = dict(ansible_env, ANSIBLE_INVENTORY=str(inventory(tmp_path / "inventory")))
    # The docs name fixed directories under /tmp: one run at a time on this machine, and nothing of ours left there.
    # The models.yml docs/model-serving.md shows, where the command runs.
    text = (REPO / "docs" / "model-serving.md").read_text()
    (tmp_path / "models.yml").write_text(re.search(r"with `models.yml` like:\n\n```yaml\n(.*?)```", text, re.S).group(1))
    with open("/tmp/litemaas-doc-commands.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for target in TMP_DIRS:
                shutil.rmtree(target, ignore_errors=True)
            sh("ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_render_dir=/tmp/litemaas", env, tmp_path)
            plain = _render_manifests(Path("/tmp/litemaas"))
            sh("ansible-playbook rhpds.litemaas.deploy -e ocp4_workload_litemaas_render_dir=/tmp/litemaas-render -e ocp4_workload_litemaas_namespace=litemaas"
               " -e ocp4_workload_litemaas_cluster_domain=apps.cluster.example.com", env, tmp_path)
            listing = sh("ls /tmp/litemaas-render", env, tmp_path).stdout.split()
            rendered = _render_manifests(Path("/tmp/litemaas-render"))
            sh("ansible-playbook rhpds.litemaas.model_serving -e ocp4_workload_litemaas_render_dir=/tmp/models -e @models.yml", env, tmp_path)
            models = _render_manifests(Path("/tmp/models"))
        finally:
            for target in TMP_DIRS:
                shutil.rmtree(target, ignore_errors=True)
    # "01-namespace ... 09-frontend, in deployment order"
    assert listing[0] == "01-namespace" and listing[-1] == "09-frontend" and listing == sorted(listing), listing
    assert len(listing) == 9 and all(name[:2] == f"{i:02d}" for i, name in enumerate(listing, start=1)), listing
    for docs in (plain, rendered):
        namespaces = [d for path, ds in docs.items() for d in ds if d["kind"] == "Namespace"]
        assert [n["metadata"]["name"] for n in namespaces] == [NS]
        kinds = {d["kind"] for ds in docs.values() for d in ds}
        assert {"Deployment", "StatefulSet", "Route", "Secret", "Service"} <= kinds, kinds
    hosts = sorted(d["spec"]["host"] for ds in rendered.values() for d in ds if d["kind"] == "Route")
    assert hosts and all(h.endswith(".apps.cluster.example.com") for h in hosts), hosts
    # playbooks/model_serving.yml: the models of models.yml as InferenceServices, with their runtimes.
    services = sorted(d["metadata"]["name"] for ds in models.values() for d in ds if d["kind"] == "InferenceService")
    assert services == ["granite-3-2-8b-instruct", "nomic-embed-text-v1-5", "phi-mini"], services
    assert {d["kind"] for ds in models.values() for d in ds} >= {"InferenceService", "ServingRuntime"}


# ---------------------------------------------------------------- installing the collection

def test_install_commands_install_the_collection(ansible_env, tmp_path):
    # A copy of the checkout as a user has it (its files, without what git ignores), built and installed where
    # ANSIBLE_COLLECTIONS_PATH points first.
    checkout = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=str(REPO), capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file() and not name.endswith(".tar.gz"):
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, checkout / name)
    installed = tmp_path / "installed"
    env = dict(ansible_env, ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([str(installed)] + ansible_env["ANSIBLE_COLLECTIONS_PATH"].split(os.pathsep)[1:]))
    out = sh("ansible-galaxy collection build . && ansible-galaxy collection install rhpds-litemaas-*.tar.gz", env, checkout).stdout
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    assert f"rhpds.litemaas:{version} was installed successfully" in out, out
    target = installed / "ansible_collections" / "rhpds" / "litemaas"
    assert sorted(p.name for p in (target / "playbooks").glob("*.yml")) == sorted(p.name for p in (REPO / "playbooks").glob("*.yml"))
    assert (target / "MANIFEST.json").is_file() and not (target / ".venv").exists()
    # docs/deployment.md: the install by name, from the collection server ANSIBLE_GALAXY_SERVER names (a stand-in
    # with Galaxy's v3 API, as Automation Hub has, serving the tarball just built); the same command again does nothing.
    galaxy = GalaxyServer(sorted(checkout.glob("rhpds-litemaas-*.tar.gz"))).start()
    try:
        by_name = tmp_path / "by-name"
        hub_env = dict(env, ANSIBLE_GALAXY_SERVER=galaxy.url, HOME=str(tmp_path / "home"),
                       ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([str(by_name)] + env["ANSIBLE_COLLECTIONS_PATH"].split(os.pathsep)[1:]))
        out = sh("ansible-galaxy collection install rhpds.litemaas", hub_env, tmp_path).stdout
        assert f"rhpds.litemaas:{version} was installed successfully" in out, out
        assert ("GET", f"/download/rhpds-litemaas-{version}.tar.gz") in galaxy.requests, galaxy.requests
        from_hub = by_name / "ansible_collections" / "rhpds" / "litemaas"
        assert sorted(str(p.relative_to(from_hub)) for p in from_hub.rglob("*")) == sorted(str(p.relative_to(target)) for p in target.rglob("*"))
        again = sh("ansible-galaxy collection install rhpds.litemaas", hub_env, tmp_path).stdout
        assert "Nothing to do. All requested collections are already installed." in again, again
    finally:
        galaxy.stop()
    # The dependency kubernetes.core needs, in the Python its modules run with (the main virtualenv, also when the
    # playbooks run with another ansible-core): already there, so pip finds it and changes nothing.
    pip_env = dict(ansible_env, PATH=str(Path(sys.executable).parent) + os.pathsep + ansible_env.get("PATH", ""))
    pip = sh("pip install kubernetes", pip_env, tmp_path).stdout
    assert "Requirement already satisfied: kubernetes" in pip, pip


# ---------------------------------------------------------------- the checkout's bootstrap

def test_bootstrap_command_reuses_what_is_installed():
    """bench/README.md's "once" line, in the checkout the test command has bootstrapped: it installs nothing again and
    leaves the virtualenv with the stamp of the pins and the proxy importable."""
    venv = REPO / ".venv"
    stamp = (venv / ".litemaas-stamp").read_text()
    env = {k: v for k, v in os.environ.items() if k != "LITEMAAS_VENV"}
    run = sh("bash -c '. scripts/lib.sh && bootstrap'", env, REPO)
    assert "Installing" not in run.stderr, run.stderr
    assert (venv / ".litemaas-stamp").read_text() == stamp
    wanted = subprocess.run(["bash", "-c", ". scripts/lib.sh && stamp_of"], cwd=str(REPO), capture_output=True, text=True, check=True).stdout
    assert stamp.strip() == wanted.strip()
    check = subprocess.run([str(venv / "bin" / "python"), "-c", "import litemaas_proxy, ansible; print(litemaas_proxy.__name__)"],
                           capture_output=True, text=True, check=False)
    assert check.stdout.strip() == "litemaas_proxy", check.stderr

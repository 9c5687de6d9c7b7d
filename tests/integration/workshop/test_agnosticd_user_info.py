"""The agnosticd_user_info stand-in behaves as the real plugin (argument checks, files, data_prefix, printed result),
and the deploy role publishes its user info through it in every AgnosticD layout. No proxy needed."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.support.agnosticd import Layout, callback_body, requester_email

CALLS = """---
- name: Call agnosticd_user_info as workloads do, and as they must not
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Messages (a list), shared data, one user's data and messages
      {name}:
        msg: "{{{{ item.msg | default(omit) }}}}"
        data: "{{{{ item.data | default(omit) }}}}"
        user: "{{{{ item.user | default(omit) }}}}"
      loop:
        - msg: [first line, second line]
        - data: {{shared: 1}}
        - {{user: user1, data: {{key: sk-one}}, msg: [hello user1, bye]}}
        - {{user: user1, msg: again}}
      register: good

    - name: Bad calls
      {name}: "{{{{ item }}}}"
      loop:
        - {{msg: a, body: b}}
        - {{data: [not, a, dict]}}
        - {{msg: a, unknown: 1}}
        - {{data: {{a: 1}}, data_prefix: c1_}}
      register: bad
      ignore_errors: true

    - name: Keep the results
      ansible.builtin.copy:
        dest: "{{{{ output_dir }}}}/results.json"
        content: "{{{{ {{'good': good.results, 'bad': bad.results}} | to_json }}}}"
        mode: "0600"
"""


def run(layout: Layout, playbook: str, extra: dict) -> subprocess.CompletedProcess:
    vars_file = layout.root / "vars.json"
    vars_file.write_text(json.dumps(extra))
    return subprocess.run(["ansible-playbook", str(layout.root / playbook), "-e", f"@{vars_file}"], env=layout.env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("kind", ["galaxy", "legacy"])
def test_stand_in_behaves_as_the_real_plugin(ansible_env, tmp_path, kind):
    layout = Layout(kind, tmp_path / kind, ansible_env)
    name = "agnosticd.core.agnosticd_user_info" if kind == "galaxy" else "agnosticd_user_info"
    (layout.root / "calls.yml").write_text(CALLS.format(name=name))
    proc = run(layout, "calls.yml", {"output_dir": str(layout.output_dir), "ACTION": "provision"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((layout.output_dir / "results.json").read_text())

    # The printed result: the requester's messages prefixed with user.info, the data, the user.
    good = results["good"]
    assert good[0]["msg"] == ["user.info: first line", "user.info: second line"]
    assert good[1]["data"] == {"shared": 1}
    assert (good[2]["user"], good[2]["msg"], good[2]["data"]) == ("user1", ["hello user1", "bye"], {"key": "sk-one"})
    assert '"user.info: first line"' in proc.stdout and "sk-one" in proc.stdout  # printed unless the task has no_log

    # The files: one line per message element; users.<name> with that user's data and messages joined by newlines.
    assert (layout.output_dir / "provision-user-info.yaml").read_text() == '- "first line"\n- "second line"\n'
    written = yaml.safe_load((layout.output_dir / "provision-user-data.yaml").read_text())
    prefixed = {"c1_a": 1} if kind == "galaxy" else {}  # from the data_prefix call below, which only agnosticd.core takes
    assert written == {"shared": 1, "users": {"user1": {"key": "sk-one", "msg": "hello user1\nbye\nagain"}}, **prefixed}
    body = callback_body(layout.output_dir)
    assert requester_email(body["messages"]) == ["first line", "second line"]

    bad = [(r.get("failed"), r.get("error") or r.get("msg")) for r in results["bad"]]
    assert bad[0] == (True, "msg and body are mutually exclusive")
    assert bad[1] == (True, "data must be a dictionary of name/value pairs")
    assert bad[2][0] is True and "Invalid options for" in bad[2][1] and "unknown" in bad[2][1]
    if kind == "galaxy":  # agnosticd.core takes data_prefix; the legacy plugin does not know it
        assert bad[3] == (False, None)
    else:
        assert bad[3][0] is True and "data_prefix" in bad[3][1]


DEPLOY_USER_INFO = """---
- name: Publish the deploy role's user info as AgnosticD runs it
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Run the deploy role's user info tasks
      module_defaults:
        agnosticd.core.agnosticd_user_info:
          data_prefix: "{{ agnosticd_data_prefix | default('') }}"
      block:
        - name: User info
          ansible.builtin.include_role:
            name: rhpds.litemaas.ocp4_workload_litemaas
            tasks_from: user_info
          vars:
            __ocp4_workload_litemaas_api_host: litellm-api.apps.example.com
            __ocp4_workload_litemaas_admin_host: litellm-admin.apps.example.com
            __ocp4_workload_litemaas_frontend_host: litellm-frontend.apps.example.com
            __ocp4_workload_litemaas_proxy_replicas: 3
            __ocp4_workload_litemaas_oauth_mode: oauthclient
"""


@pytest.mark.parametrize("kind, prefix", [("galaxy", "cluster2_"), ("in-tree", "")])
def test_deploy_role_publishes_one_line_per_message(ansible_env, tmp_path, kind, prefix):
    layout = Layout(kind, tmp_path / kind, ansible_env)
    (layout.root / "deploy_user_info.yml").write_text(DEPLOY_USER_INFO)
    proc = run(layout, "deploy_user_info.yml", {**layout.extra_vars([]), "agnosticd_data_prefix": prefix})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    body = callback_body(layout.output_dir)
    assert requester_email(body["messages"]) == body["messages"] == [
        "LiteMaaS portal: https://litellm-frontend.apps.example.com",
        "LiteMaaS API endpoint (OpenAI compatible): https://litellm-api.apps.example.com/v1",
        "LiteMaaS admin API: https://litellm-admin.apps.example.com/api",
        "Admin credentials: master key in Secret litemaas/litellm-secret (key LITELLM_MASTER_KEY), portal admin API key in "
        "Secret litemaas/backend-secret (key ADMIN_API_KEYS)"]
    data = body["data"]
    assert data[f"{prefix}litellm_api_base_url"] == "https://litellm-api.apps.example.com/v1"
    assert data[f"{prefix}litemaas_master_key_secret"] == "litemaas/litellm-secret"
    assert data[f"{prefix}litemaas_replicas"] == 3 and "users" not in data
    assert sorted(data) == sorted(prefix + k for k in (
        "litellm_api_endpoint", "litellm_api_base_url", "litellm_admin_url", "litemaas_frontend_url", "litemaas_namespace",
        "litemaas_version", "litemaas_replicas", "litemaas_proxy", "litellm_admin_username", "litemaas_master_key_secret",
        "litemaas_admin_api_key_secret", "litemaas_oauth_client_mode"))


def test_deploy_role_fails_when_publishing_is_required_and_impossible(ansible_env, tmp_path):
    layout = Layout("none", tmp_path / "none", ansible_env)
    (layout.root / "deploy_user_info.yml").write_text(DEPLOY_USER_INFO.replace("      module_defaults:\n        agnosticd.core.agnosticd_user_info:\n"
                                                                               "          data_prefix: \"{{ agnosticd_data_prefix | default('') }}\"\n", ""))
    proc = run(layout, "deploy_user_info.yml", {**layout.extra_vars([]), "ocp4_workload_litemaas_agnosticd_user_info": True})
    assert proc.returncode != 0
    assert ("ocp4_workload_litemaas_agnosticd_user_info is true, but neither agnosticd.core.agnosticd_user_info (the "
            "agnosticd.core collection) nor the legacy agnosticd_user_info action plugin can be called from this play") in proc.stdout
    assert layout.files() == {}

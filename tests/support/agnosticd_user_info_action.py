# Stand-in for AgnosticD's agnosticd_user_info action plugin, behaving as the real one does
# (../shared/reference/agnosticd-user-info.md): the same arguments and errors, the same files in the same layout, the
# same data_prefix, and the same printed result. tests/support/agnosticd.py installs it as agnosticd.core (with
# data_prefix) or as the legacy action plugin (without data_prefix, as the legacy plugin is).
import json
import os

import yaml
from ansible.plugins.action import ActionBase

try:  # ansible-core 2.19+: strings made here must be marked trusted before they are templated
    from ansible.template import trust_as_template
except ImportError:  # 2.18 and earlier
    def trust_as_template(value):
        return value

IN_COLLECTION = __name__.startswith("ansible_collections.agnosticd.core.")
ARGS = ("msg", "data", "data_prefix", "user", "body") if IN_COLLECTION else ("msg", "data", "user", "body")


class _Dumper(yaml.SafeDumper):
    """As the real plugin's dumper: anything YAML cannot represent (such as Ansible's tagged strings) as its str()."""


_Dumper.add_representer(None, lambda dumper, value: dumper.represent_str(str(value)))


def _merge_text(entry, name, text):
    entry[name] = entry[name] + "\n" + text if name in entry else text


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGS)  # ActionBase fails the task on any other argument

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True  # and, as the real plugin, it writes its files in check mode too
        result = super().run(tmp, task_vars or {})
        result["_ansible_verbose_always"] = True  # printed in the log like debug, unless the task has no_log

        args = self._task.args
        msg, body, user = args.get("msg"), args.get("body"), args.get("user")
        data = args.get("data", {})
        prefix = args.get("data_prefix")
        if msg and body:
            return dict(result, failed=True, error="msg and body are mutually exclusive")
        lines = msg if isinstance(msg, list) else [msg]
        if msg is not None and not all(isinstance(line, str) for line in lines):
            return dict(result, failed=True, error="msg must be a string or a list of strings")
        if msg is not None:
            result["msg"] = msg if user else (["user.info: " + m for m in msg] if isinstance(msg, list) else "user.info: " + msg)
        if not user and body is not None:
            result["msg"] = "user.body: " + body
        if data:
            result["data"] = data
            if not isinstance(data, dict):
                return dict(result, failed=True, error="data must be a dictionary of name/value pairs")
            if prefix:
                data = {prefix + key: value for key, value in data.items()}
        if user:
            result["user"] = user

        action = self._templar.template(trust_as_template('{{ ACTION | default(hostvars.localhost.ACTION) | default("provision", true) }}'))
        output_dir = self._templar.template(trust_as_template(
            '{{ output_dir | default(hostvars.localhost.output_dir, true) | default(playbook_dir, true) | default(".", true) }}'))
        os.makedirs(output_dir, exist_ok=True)

        def path(kind):
            return os.path.join(output_dir, f"{action}-user-{kind}.yaml")

        if not user and msg is not None:
            with open(path("info"), "a") as fh:
                fh.writelines("- " + json.dumps(line) + "\n" for line in lines)
        if not user and body is not None:
            with open(path("body"), "a") as fh:
                fh.write("- " + json.dumps(body) + "\n")
        if data or user:
            data = json.loads(json.dumps(data))
            try:
                with open(path("data")) as fh:
                    stored = yaml.safe_load(fh) or {}
            except FileNotFoundError:
                stored = {}
            if user:
                entry = stored.setdefault("users", {}).setdefault(user, {})
                entry.update(data)
                if msg:
                    _merge_text(entry, "msg", "\n".join(lines))
                if body:
                    _merge_text(entry, "body", body)
            else:
                stored.update(data)
            with open(path("data"), "w") as fh:
                yaml.dump(stored, stream=fh, Dumper=_Dumper, explicit_start=True)
        result["failed"] = False
        return result

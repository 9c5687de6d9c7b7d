"""Render mode of the manifest pipeline (role rhpds.litemaas.litemaas_manifests): write every manifest in one step.

Reads JSON on stdin:
  {"files": [{"path", "content", "mode"?}], "prune_dirs": [dir, ...], "secret_kinds": [kind, ...], "check": bool,
   "remove": [path or dir, ...]}
Checks that every *.yaml file holds Kubernetes objects (a mapping with apiVersion, kind and metadata.name per document),
then writes each file whose content or mode differs (creating directories; mode 0600 when the file holds an object of
a secret kind, else 0644, unless the file gives its mode), removes *.yaml files in prune_dirs that are not listed,
and removes the paths in "remove". With "check", only reports. Prints one JSON line
{"changed", "written", "removed", "files"} and never prints file contents. Exit 1 with {"failed": true, "msg"} on bad input.
"""

import json
import os
import shutil
import sys

import yaml


class BadManifest(ValueError):
    pass


def kinds_of(path, content):
    """Kinds of the objects in one YAML file; raises BadManifest naming the file and document."""
    try:
        docs = [d for d in yaml.safe_load_all(content) if d is not None]
    except yaml.YAMLError as exc:
        raise BadManifest(f"{path} is not valid YAML: {' '.join(str(exc).split())}")
    kinds = []
    for number, doc in enumerate(docs, 1):
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind") or not (doc.get("metadata") or {}).get("name"):
            raise BadManifest(f"{path} document {number} is not a Kubernetes object with apiVersion, kind and metadata.name")
        kinds.append(doc["kind"])
    return kinds


def file_mode(item, secret_kinds):
    if item.get("mode"):
        return int(str(item["mode"]), 8)
    if item["path"].endswith(".yaml") and set(kinds_of(item["path"], item["content"])) & set(secret_kinds):
        return 0o600
    return 0o644


def plan(files, prune_dirs, secret_kinds=(), remove=()):
    """What to write and remove: ([(path, data, mode)], [path])."""
    writes, removals, wanted = [], [], set()
    for item in files:
        path = os.path.abspath(item["path"])
        if path in wanted:
            raise BadManifest(f"{path} is rendered twice")
        wanted.add(path)
        if path.endswith(".yaml"):
            kinds_of(path, item["content"])
        data = item["content"].encode("utf-8")
        mode = file_mode(item, secret_kinds)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                if handle.read() == data and (os.stat(path).st_mode & 0o7777) == mode:
                    continue
        writes.append((path, data, mode))
    for directory in prune_dirs:
        if os.path.isdir(directory):
            for name in sorted(os.listdir(directory)):
                path = os.path.abspath(os.path.join(directory, name))
                if name.endswith(".yaml") and os.path.isfile(path) and path not in wanted:
                    removals.append(path)
    for path in remove:
        path = os.path.abspath(path)
        if os.path.lexists(path) and path not in removals:
            removals.append(path)
    return writes, removals


def apply_plan(writes, removals):
    for path, data, mode in writes:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    for path in removals:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def write_files(files, prune_dirs, secret_kinds=(), remove=(), check=False):
    writes, removals = plan(files, prune_dirs, secret_kinds, remove)
    if not check:
        apply_plan(writes, removals)
    return [w[0] for w in writes], removals


def main():
    request = json.load(sys.stdin)
    try:
        written, removed = write_files(request.get("files", []), request.get("prune_dirs", []), request.get("secret_kinds", []),
                                       request.get("remove", []), bool(request.get("check")))
    except BadManifest as exc:
        print(json.dumps({"failed": True, "msg": str(exc)}))
        return 1
    print(json.dumps({"changed": bool(written or removed), "written": written, "removed": removed, "files": len(request.get("files", []))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

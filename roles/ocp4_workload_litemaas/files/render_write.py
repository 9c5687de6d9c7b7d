"""Render mode of the ocp4_workload_litemaas role: write every manifest in one step.

Reads JSON on stdin: {"files": [{"path", "content", "mode"}], "prune_dirs": [dir, ...]}. Writes each file whose
content or mode differs (creating directories), removes *.yaml files in prune_dirs that are not listed, and prints
one JSON line {"changed": bool, "written": [...], "removed": [...]}. Never prints file contents.
"""

import json
import os
import sys


def write_files(files, prune_dirs, suffix=".yaml"):
    written, removed, wanted = [], [], set()
    for item in files:
        path = os.path.abspath(item["path"])
        wanted.add(path)
        data = item["content"].encode("utf-8")
        mode = int(item.get("mode") or "0644", 8)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                if handle.read() == data and (os.stat(path).st_mode & 0o7777) == mode:
                    continue
        written.append(path)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    for directory in prune_dirs:
        if os.path.isdir(directory):
            for name in sorted(os.listdir(directory)):
                path = os.path.abspath(os.path.join(directory, name))
                if name.endswith(suffix) and os.path.isfile(path) and path not in wanted:
                    os.remove(path)
                    removed.append(path)
    return written, removed


def main():
    request = json.load(sys.stdin)
    written, removed = write_files(request["files"], request.get("prune_dirs", []))
    print(json.dumps({"changed": bool(written or removed), "written": written, "removed": removed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

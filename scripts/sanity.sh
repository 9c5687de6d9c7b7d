#!/usr/bin/env bash
# ansible-test sanity for the collection. ansible-test wants the collection at
# .../ansible_collections/rhpds/litemaas, so the tracked files are copied there first.
# It runs from its own small virtualenv (ansible-core only) with --requirements, so the
# sanity tools' pinned versions never touch .venv.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# LITEMAAS_SANITY_VENV: a virtualenv with another ansible-core (scripts/test.sh passes the oldest supported one).
SVENV="${LITEMAAS_SANITY_VENV:-$WORK/sanity-venv}"
if [ ! -x "$SVENV/bin/ansible-test" ]; then
  log "Creating the ansible-test virtualenv"
  python3 -m venv "$SVENV"
  "$SVENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "$(grep -E '^ansible-core==' "$ROOT/requirements/dev.txt" | cut -d' ' -f1)" >"$WORK/sanity-pip.log" 2>&1 \
    || { cat "$WORK/sanity-pip.log" >&2; exit 1; }
fi

# ansible-test bootstraps pip in each of its virtualenvs with a script it downloads from a host outside
# the package index; scripts/get_pip_offline.py does the same job with ensurepip + the package index.
reqs=$("$SVENV/bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py
pip_version=$(grep -oE "pip='[0-9.]+'" "$reqs" | head -1 | cut -d"'" -f2)
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -f "$cache" ] || ! cmp -s "$ROOT/scripts/get_pip_offline.py" "$cache"; then
  mkdir -p "$(dirname "$cache")"
  cp "$ROOT/scripts/get_pip_offline.py" "$cache"
fi

# Outside the checkout: inside it, ansible-test would ask git for the file list and find the copy ignored.
dest="${TMPDIR:-/tmp}/litemaas-sanity-$(printf %s "$ROOT" | sha256sum | cut -c1-12)/ansible_collections/rhpds/litemaas"
rm -rf "$dest"
mkdir -p "$dest"
# The files the collection ships: tracked (and new, not ignored) files, less galaxy.yml's build_ignore.
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | "$SVENV/bin/python" -c '
import fnmatch, os, sys, yaml
ignore = yaml.safe_load(open("galaxy.yml")).get("build_ignore", [])
def shipped(path):
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return os.path.exists(path) and not any(fnmatch.fnmatch(p, pat) for p in prefixes for pat in ignore)
names = [n for n in sys.stdin.read().split("\0") if n and shipped(n)]
sys.stdout.write("\0".join(names))
' | xargs -0 cp --parents -t "$dest")

cd "$dest"
rc=0
"$SVENV/bin/ansible-test" sanity --python 3.11 --requirements --color no "$@" >"$WORK/sanity.log" 2>&1 || rc=$?
grep -v -E "^(WARNING: Location|  Downloading|Collecting|Looking in|Installing collected|Successfully installed|Requirement already|     ━)" \
  "$WORK/sanity.log" || true
exit "$rc"

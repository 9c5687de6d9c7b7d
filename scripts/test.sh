#!/usr/bin/env bash
# The whole test suite, from nothing: installs what is missing, lints, runs ansible-test sanity and pytest.
# Services (PostgreSQL, Redis, the proxy, the stub model server) are started by the tests on loopback,
# with their data under .work/, and stopped afterwards even when tests fail.
# Usage: bash scripts/test.sh                 everything
#        bash scripts/test.sh PYTEST-ARGS...  only those tests (e.g. a path, -k NAME): no lint, sanity or molecule
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The tests' data dirs that exist before this run: another run of the test command may be using them (this one may
# even run inside a test of that one, tests/playbooks/test_doc_commands_suites.py).
before=" $(if cd "$WORK" 2>/dev/null; then echo pytest-*; fi) "
cleanup() {
  # Safety net: anything still running from the data dirs of this run's tests is stopped, nothing of another run.
  local dir
  for dir in "$WORK"/pytest-*; do
    case "$before" in *" ${dir##*/} "*) continue ;; esac
    pkill -f "$dir/" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

start=$(date +%s)
bootstrap
cd "$ROOT"

if [ "$#" -gt 0 ]; then
  log "pytest $*"
  python -m pytest "$@"
  log "passed in $(( $(date +%s) - start ))s"
  exit 0
fi

log "ruff"
ruff check .

log "yamllint"
yamllint --strict .

log "ansible-lint (production profile)"
ansible-lint --offline --profile production -q --nocolor

log "ansible-test sanity"
bash "$ROOT/scripts/sanity.sh"

# The oldest ansible-core meta/runtime.yml claims (the main virtualenv has the newest): sanity, and in the whole run
# the tests marked ansible_core (tests/support/ansible_core.py) once more with it.
oldest_core="$(ensure_ansible_core_venv 2.16)"
log "ansible-test sanity with ansible-core 2.16"
LITEMAAS_SANITY_VENV="$oldest_core" bash "$ROOT/scripts/sanity.sh"

log "module reference is up to date"
python scripts/gen_module_docs.py --check

# Two processes, whole test files to each (the tests of one file share their services). tests/reliability and
# tests/integration/local run next, with exactly the command lines their docs give (docs/reliability.md,
# docs/local.md; tests/playbooks/test_doc_commands_suites.py checks that these lines stay the docs' lines).
log "pytest (2 processes)"
python -m pytest -n 2 --dist loadfile --durations=30 --ignore=tests/reliability --ignore=tests/integration/local
log "pytest: tests/reliability, as docs/reliability.md runs it"
.venv/bin/python -m pytest -q -n 2 --dist loadfile tests/reliability --ignore=tests/reliability/test_schemathesis.py
.venv/bin/python -m pytest -q tests/reliability/test_schemathesis.py
log "pytest: tests/integration/local, as docs/local.md runs it"
bash scripts/test.sh tests/integration/local
log "pytest: the tests marked ansible_core with ansible-core 2.16"
LITEMAAS_ANSIBLE_CORE_VENV="$oldest_core" python -m pytest -n 2 --dist loadfile --durations=15 -m ansible_core --ignore=tests/reliability/test_schemathesis.py

log "molecule (deploy role, render scenario with idempotence)"
# Molecule keeps its state in ~/.ansible/tmp under a name derived from the checkout's directory name only, so a
# state left by another checkout of the same name would make it skip `prepare`. Keep it here, fresh for each run.
export MOLECULE_EPHEMERAL_DIRECTORY="$WORK/molecule-state"
rm -rf "$MOLECULE_EPHEMERAL_DIRECTORY"
molecule test -s render

log "all checks passed in $(( $(date +%s) - start ))s"

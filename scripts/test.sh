#!/usr/bin/env bash
# The whole test suite, from nothing: installs what is missing, lints, runs ansible-test sanity and pytest.
# Services (PostgreSQL, Redis, the proxy, the stub model server) are started by the tests on loopback,
# with their data under .work/, and stopped afterwards even when tests fail.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cleanup() {
  # Safety net: anything still running from this checkout's test data dirs is stopped.
  pkill -f "$WORK/pytest-" >/dev/null 2>&1 || true
}
trap cleanup EXIT

start=$(date +%s)
bootstrap
cd "$ROOT"

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
if [ "$#" -eq 0 ]; then
  log "ansible-test sanity with ansible-core 2.16"
  LITEMAAS_SANITY_VENV="$oldest_core" bash "$ROOT/scripts/sanity.sh"
fi

log "module reference is up to date"
python scripts/gen_module_docs.py --check

if [ "$#" -gt 0 ]; then
  log "pytest $*"
  python -m pytest "$@"
else
  # Two processes, whole files to each (the tests of one file share their services); the schemathesis file then
  # runs alone, because its last test checks that the fuzzing in that same process reached every operation.
  log "pytest (2 processes)"
  python -m pytest -n 2 --dist loadfile --durations=30 --ignore=tests/reliability/test_schemathesis.py
  log "pytest: schemathesis fuzzing of the proxy's OpenAPI document"
  python -m pytest tests/reliability/test_schemathesis.py
  log "pytest: the tests marked ansible_core with ansible-core 2.16"
  LITEMAAS_ANSIBLE_CORE_VENV="$oldest_core" python -m pytest -n 2 --dist loadfile --durations=15 -m ansible_core --ignore=tests/reliability/test_schemathesis.py
fi

log "molecule (deploy role, render scenario with idempotence)"
# Molecule keeps its state in ~/.ansible/tmp under a name derived from the checkout's directory name only, so a
# state left by another checkout of the same name would make it skip `prepare`. Keep it here, fresh for each run.
export MOLECULE_EPHEMERAL_DIRECTORY="$WORK/molecule-state"
rm -rf "$MOLECULE_EPHEMERAL_DIRECTORY"
molecule test -s render

log "all checks passed in $(( $(date +%s) - start ))s"

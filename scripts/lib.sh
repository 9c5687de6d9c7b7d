# shellcheck shell=bash
# Shared bootstrap for scripts/test.sh and scripts/local.sh: installs what the checkout needs, idempotently.
# - OS packages (PostgreSQL, Redis) when missing, from Debian's archive;
# - a virtualenv at .venv with the pinned Python packages (requirements/dev.txt + constraints.txt) and the proxy;
# - the Ansible collections come from PyPI's `ansible` package (Galaxy is not needed).
# A stamp file records what was installed, so a second run reuses everything.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LITEMAAS_VENV:-$ROOT/.venv}"
WORK="$ROOT/.work"
PY="$VENV/bin/python"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

have_pg() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && return 0
  done
  return 1
}

ensure_os_packages() {
  local missing=()
  have_pg || missing+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v git >/dev/null 2>&1 || missing+=(git)
  # ss reads a listening socket's backlog (tests/proxy/test_burst.py).
  if [ "${LITEMAAS_DEV_TOOLS:-1}" = 1 ]; then command -v ss >/dev/null 2>&1 || missing+=(iproute2); fi
  # A developer tool: only the test command needs it (scripts/local.sh sets LITEMAAS_DEV_TOOLS=0).
  if [ "${LITEMAAS_DEV_TOOLS:-1}" = 1 ]; then command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck); fi
  # The browser of the CORS test (tests/proxy/test_cors.py drives it with Playwright; Playwright's own download is not used).
  if [ "${LITEMAAS_DEV_TOOLS:-1}" = 1 ]; then [ -x /usr/bin/chromium ] || missing+=(chromium); fi
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  # Only the test command too: the monitoring tests run the real Prometheus and promtool (alert rules, a 2-worker proxy).
  if [ "${LITEMAAS_DEV_TOOLS:-1}" = 1 ]; then { command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus); fi
  if [ "${#missing[@]}" -gt 0 ]; then
    log "Installing OS packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
      echo "error: need root to install ${missing[*]} (or install them yourself)" >&2
      return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps the package scripts from starting system services: we start our own on loopback.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
  fi
}

stamp_of() {
  local f
  for f in "$ROOT/requirements/dev.txt" "$ROOT/requirements/constraints.txt" "$ROOT/files/proxy/pyproject.toml"; do
    if [ -f "$f" ]; then cat "$f"; fi
  done | sha256sum | cut -d' ' -f1
}

# pip, quiet unless it fails (then its whole output is shown).
pip_quiet() {
  local out
  mkdir -p "$WORK"
  out="$WORK/pip.log"
  if ! "$PY" -m pip --disable-pip-version-check "$@" >"$out" 2>&1; then
    grep -v '^WARNING: Location' "$out" >&2
    echo "error: pip $* failed" >&2
    return 1
  fi
}

ensure_venv() {
  local want have=""
  want="$(stamp_of)"
  [ -f "$VENV/.litemaas-stamp" ] && have="$(cat "$VENV/.litemaas-stamp")"
  if [ -x "$PY" ] && [ "$want" = "$have" ]; then
    return 0
  fi
  log "Installing Python packages into $VENV (pinned; first run takes a few minutes)"
  [ -x "$PY" ] || python3 -m venv "$VENV"
  pip_quiet install -r "$ROOT/requirements/dev.txt" -c "$ROOT/requirements/constraints.txt"
  if [ -f "$ROOT/files/proxy/pyproject.toml" ]; then
    pip_quiet install -e "$ROOT/files/proxy" -c "$ROOT/requirements/constraints.txt"
  fi
  "$PY" -c 'import ansible, ansible_collections.kubernetes.core, ansible_collections.community.okd, psycopg2, pytest' \
    || { echo "error: the virtualenv at $VENV is incomplete" >&2; return 1; }
  echo "$want" > "$VENV/.litemaas-stamp"
}

# A virtualenv with another ansible-core (requirements/ansible-VERSION.txt), e.g. the oldest the collection supports:
# $WORK/ansible-VERSION. Prints its path. The dependency collections stay the main virtualenv's (tests/conftest.py
# puts its ansible_collections on ANSIBLE_COLLECTIONS_PATH), and modules still run with its Python.
ensure_ansible_core_venv() {
  local version="$1" req dir want have=""
  req="$ROOT/requirements/ansible-$version.txt"
  dir="$WORK/ansible-$version"
  [ -f "$req" ] || { echo "error: no $req" >&2; return 1; }
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  [ -f "$dir/.litemaas-stamp" ] && have="$(cat "$dir/.litemaas-stamp")"
  if [ ! -x "$dir/bin/ansible-playbook" ] || [ "$want" != "$have" ]; then
    log "Installing ansible-core $version into $dir"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >"$WORK/pip-ansible-$version.log" 2>&1 \
      || { cat "$WORK/pip-ansible-$version.log" >&2; return 1; }
    echo "$want" > "$dir/.litemaas-stamp"
  fi
  printf '%s\n' "$dir"
}

# A collections path in which this checkout is rhpds.litemaas.
ensure_collection_link() {
  mkdir -p "$WORK/collections/ansible_collections/rhpds"
  ln -sfn "$ROOT" "$WORK/collections/ansible_collections/rhpds/litemaas"
  export ANSIBLE_COLLECTIONS_PATH="$WORK/collections"
  export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=true
}

# The stand-in for `oc` in the tests of the documented command lines: Debian's kubectl (package kubernetes-client),
# unpacked under .work rather than installed, because a machine may already have another package's /usr/bin/kubectl.
# The tests put it on PATH under the name oc (tests/support/oc.py).
ensure_kubectl_standin() {
  local dir="$WORK/kubernetes-client" deb
  [ -x "$dir/usr/bin/kubectl" ] && return 0
  log "Unpacking Debian's kubectl (kubernetes-client) into $dir"
  mkdir -p "$WORK/deb"
  (cd "$WORK/deb" && rm -f kubernetes-client_*.deb && { apt-get download kubernetes-client >/dev/null 2>&1 \
     || { apt-get update -qq && apt-get download kubernetes-client >/dev/null; }; }) || return 1
  deb="$(ls "$WORK"/deb/kubernetes-client_*.deb)"
  rm -rf "$dir.tmp" && dpkg-deb -x "$deb" "$dir.tmp" && mv "$dir.tmp" "$dir"
  rm -f "$deb"
}

bootstrap() {
  ensure_os_packages
  if [ "${LITEMAAS_DEV_TOOLS:-1}" = 1 ]; then ensure_kubectl_standin; fi
  ensure_venv
  ensure_collection_link
  export PATH="$VENV/bin:$PATH"
}

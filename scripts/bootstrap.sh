#!/usr/bin/env bash
# Creates the project's Python environments from the committed lock files and installs the
# Debian services the tests and the local platform use. Idempotent: an environment is rebuilt only
# when its lock file changed. Usage: scripts/bootstrap.sh [iac|ml|policy|checkov|dvc|flink|system ...] (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${MLPLAT_PYTHON:-$(command -v python3.11 || command -v python3)}

log() { printf '[bootstrap] %s\n' "$*" >&2; }

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then UV=$(command -v uv); return; fi
  if [ ! -x "$ROOT/.tools/bin/uv" ]; then
    log "installing uv into .tools/ (pip)"
    "$PY" -m venv "$ROOT/.tools"
    "$ROOT/.tools/bin/pip" install -q uv
  fi
  UV="$ROOT/.tools/bin/uv"
}

# make_env DIR LOCKFILE: (re)create DIR from LOCKFILE and install this project into it, editable.
make_env() {
  local dir=$1 lock=$2 stamp="$1/.lock.sha256" want
  want=$(sha256sum "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then log "$dir is up to date"; return; fi
  log "building $dir from $lock"
  [ -x "$dir/bin/python" ] || "$UV" venv -q --python "$PY" "$dir"
  "$UV" pip sync -q --python "$dir/bin/python" "$lock"
  "$UV" pip install -q --python "$dir/bin/python" --no-deps -e .
  # Precompiled bytecode: imports stay fast where PYTHONDONTWRITEBYTECODE is set (the SDKs are large).
  "$dir/bin/python" -m compileall -q -j 0 "$dir/lib" >/dev/null 2>&1 || true
  echo "$want" > "$stamp"
}

system_packages() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v ss >/dev/null 2>&1 || missing+=(iproute2)  # `mlplat local` names who holds a busy port
  command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)  # the local traffic splitter (ml/delivery/haproxy.py)
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)  # the Spark engine (pyspark local[2])
  # `mlplat conform --runtime` (infra/conformance/runtime_contracts.py): containers in bubblewrap sandboxes,
  # Debian's builds of the images' software, PostgreSQL as the RDS stand-in.
  command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
  command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
  command -v busybox >/dev/null 2>&1 || missing+=(busybox)
  [ -x /bin/nc.openbsd ] || missing+=(netcat-openbsd)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  if [ ${#missing[@]} -eq 0 ]; then log "system packages present"; return; fi
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    log "missing Debian packages: ${missing[*]} (install them with apt-get as root)"; return 1
  fi
  local SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the packaged daemons; the project starts its own on 127.0.0.1 and needs the ports free.
  for svc in redis-server prometheus prometheus-node-exporter pgbouncer postgresql haproxy; do
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
}

# The streaming-features job (PyFlink) runs on a Java 17 runtime: Debian's headless JRE.
java_runtime() {
  if command -v java >/dev/null 2>&1; then log "java present"; return; fi
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    log "missing Debian package: openjdk-17-jre-headless (install it with apt-get as root)"; return 1
  fi
  local SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  log "installing Debian package: openjdk-17-jre-headless"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null
}

targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(system iac ml policy checkov dvc flink)
ensure_uv
for t in "${targets[@]}"; do
  case $t in
    iac) make_env .venv requirements/iac.txt ;;
    ml) make_env .venv-ml requirements/ml.txt ;;
    policy) make_env .venv-policy requirements/policy.txt ;;
    checkov) make_env .venv-checkov requirements/checkov.txt ;;  # scanner of `mlplat conform`
    dvc) make_env .venv-dvc requirements/dvc.txt ;;  # `dvc` of the data registry (ml/datasets/), S3 plugin included
    # Optional: the Flink streaming job (`mlplat local up --engines flink`, tests/flink); apache-flink pins
    # pyarrow < 21, Feast needs >= 21, so it cannot live in .venv-ml.
    flink) java_runtime; make_env .venv-flink requirements/flink.txt ;;
    system) system_packages ;;
    *) log "unknown target $t (iac|ml|policy|checkov|dvc|flink|system)"; exit 2 ;;
  esac
done

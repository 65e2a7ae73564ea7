#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, then each environment's tests. Every suite runs even
# when an earlier one fails; the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
# Conformance tests render the pinned charts: from the mirror beside the checkout unless told otherwise.
export MLPLAT_CHART_MIRROR=${MLPLAT_CHART_MIRROR:-$PWD/../shared/charts}
status=0
run() {
  local name=$1; shift
  printf '\n=== %s: %s\n' "$name" "$*"
  "$@" || { printf '=== %s FAILED\n' "$name"; status=1; }
}
# Suites whose directory holds no test file yet are skipped by name, not silently.
suite() {
  local name=$1 python=$2; shift 2
  local dirs=()
  for d in "$@"; do compgen -G "$d/test_*.py" >/dev/null && dirs+=("$d"); done
  if [ ${#dirs[@]} -eq 0 ]; then printf '\n=== %s: no tests in %s\n' "$name" "$*"; return; fi
  run "$name" "$python" -m pytest -q -p no:cacheprovider "${dirs[@]}"
}
run lint .venv/bin/ruff check .
suite "iac (mocks, policies)" .venv/bin/python tests/infra tests/policy
suite "ml (models, local platform, runbooks)" .venv-ml/bin/python tests/ml tests/local tests/runbooks
suite "policy pack" .venv-policy/bin/python tests/policy_pack
exit $status

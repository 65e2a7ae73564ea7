#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, then each environment's tests. Every suite runs even
# when an earlier one fails; the exit status is non-zero if any failed.
#   scripts/test.sh          everything (what `make test` and CI run)
#   scripts/test.sh --fast   the fast lane: unit tests only, no process started, no chart rendered
# Both use the two cores with pytest-xdist; `--dist loadgroup` keeps the modules that share one
# expensive set-up (a stack's conformance run, a running local platform) on one worker, so it is
# made once.
set -uo pipefail
cd "$(dirname "$0")/.."
fast=0
[ "${1:-}" = "--fast" ] && fast=1
# Conformance tests render the pinned charts: from the mirror beside the checkout unless told otherwise.
export MLPLAT_CHART_MIRROR=${MLPLAT_CHART_MIRROR:-$PWD/../shared/charts}
workers=${MLPLAT_TEST_WORKERS:-2}
pytest_args=(-q -p no:cacheprovider -n "$workers" --dist loadgroup)
if [ $fast -eq 1 ]; then
  export MLPLAT_TEST_FAST=1
  pytest_args+=(-m "not integration and not conformance")
fi
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
  run "$name" "$python" -m pytest "${pytest_args[@]}" "${dirs[@]}"
}
started=$SECONDS
run lint .venv/bin/ruff check .
suite "iac (mocks, policies)" .venv/bin/python tests/infra tests/policy
suite "ml (models, local platform, runbooks)" .venv-ml/bin/python tests/ml tests/local tests/runbooks
# Seven tests through the pack's gRPC analyzer: serial (its environment has no xdist).
[ $fast -eq 1 ] || run "policy pack" .venv-policy/bin/python -m pytest -q -p no:cacheprovider tests/policy_pack
printf '\n=== all suites in %d s\n' $((SECONDS - started))
exit $status

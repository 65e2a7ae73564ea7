#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, then each environment's tests. Every suite runs even
# when an earlier one fails; the exit status is non-zero if any failed.
#   scripts/test.sh          everything (what `make test` and CI run)
#   scripts/test.sh --fast   the fast lane: unit tests only, no process started, no chart rendered
# Each suite uses the two cores with pytest-xdist; `--dist loadgroup` keeps the tests that share one
# expensive set-up (a stack's conformance run, a running local platform) on one worker, so it is made
# once (tests/conftest.py). The IaC suite (rendering, checkov: CPU) and the ML suite (much of it waiting
# on the servers it starts) run side by side; the IaC suite's output follows the ML suite's.
set -uo pipefail
cd "$(dirname "$0")/.."
fast=0
[ "${1:-}" = "--fast" ] && fast=1
# Conformance tests render the pinned charts: from the mirror beside the checkout unless told otherwise.
export MLPLAT_CHART_MIRROR=${MLPLAT_CHART_MIRROR:-$PWD/../shared/charts}
workers=${MLPLAT_TEST_WORKERS:-2}
pytest_args=(-q -p no:cacheprovider -n "$workers" --dist loadgroup --durations=15)
if [ $fast -eq 1 ]; then
  export MLPLAT_TEST_FAST=1
  pytest_args+=(-m "not integration and not conformance")
fi
status=0
run() {
  local name=$1; shift
  local started=$SECONDS
  printf '\n=== %s: %s\n' "$name" "$*"
  if "$@"; then printf '=== %s: passed in %d s\n' "$name" $((SECONDS - started))
  else printf '=== %s FAILED (%d s)\n' "$name" $((SECONDS - started)); return 1; fi
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
run lint .venv/bin/ruff check . || status=1
iac_log=$(mktemp)
trap 'rm -f "$iac_log"' EXIT
suite "iac (mocks, policies, conformance)" .venv/bin/python tests/infra tests/policy >"$iac_log" 2>&1 &
iac_pid=$!
suite "ml (models, local platform, runbooks)" .venv-ml/bin/python tests/ml tests/local tests/runbooks || status=1
wait "$iac_pid" || status=1
cat "$iac_log"
# The Flink streaming job on a mini-cluster: one JVM for its module, after the CPU-heavy suites.
suite "flink (streaming features)" .venv-flink/bin/python tests/flink || status=1
# Seven tests through the pack's gRPC analyzer: serial (its environment has no xdist).
if [ $fast -eq 0 ]; then
  run "policy pack" .venv-policy/bin/python -m pytest -q -p no:cacheprovider tests/policy_pack || status=1
fi
printf '\n=== all suites in %d s\n' $((SECONDS - started))
exit $status

# Task runner. The two README commands are `make demo` (the local platform end to end) and
# `make test` (the whole suite); both build what they need first.
SHELL := /bin/bash
IAC := .venv/bin/python
ML := .venv-ml/bin/python
POLICY := .venv-policy/bin/python
STACKS := dev staging prod

.PHONY: setup demo test test-fast lint test-iac test-ml test-policy-pack synth-all policy-all conform-all config-doc clean

setup:  ## environments + Debian services (idempotent)
	scripts/bootstrap.sh

demo: setup  ## the embedded default: the whole platform on this machine
	.venv/bin/mlplat local up --redis  # redis-server is installed by setup: the full online-feature path

test: setup  ## everything CI runs
	scripts/test.sh

test-fast: setup  ## unit tests only, on both cores: no process started (tests/conftest.py enforces it)
	scripts/test.sh --fast

lint:
	.venv/bin/ruff check .

test-iac:
	$(IAC) -m pytest tests/infra tests/policy -q

test-ml:
	$(ML) -m pytest tests/ml tests/local tests/runbooks -q

test-policy-pack:
	$(POLICY) -m pytest tests/policy_pack -q

synth-all:
	@mkdir -p build/plans; for s in $(STACKS); do .venv/bin/mlplat synth --stack $$s --out build/plans/$$s.json || exit 1; done

policy-all:
	@for s in $(STACKS); do .venv/bin/mlplat policy --stack $$s || exit 1; done

conform-all:  ## every stack against the pinned charts and their schemas (docs/CONFORMANCE.md)
	@for s in $(STACKS); do .venv/bin/mlplat conform --stack $$s || exit 1; done

config-doc:
	.venv/bin/mlplat config-doc

clean:
	rm -rf build .pytest_cache

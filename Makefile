# scorehouse: run `make` for the list of targets.
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
export PREFECT_SERVER_ANALYTICS_ENABLED := false

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: ## install Java 17, redis-server and the pinned virtualenv (.venv)
	@bash scripts/setup.sh

demo: setup ## run the whole nightly path on local defaults (10k customers, 180 days)
	$(VENV)/bin/scorehouse demo

test: setup ## run the test suite (unit, component, e2e)
	$(PY) -m pytest

test-fast: setup ## the tests that need no JVM, server or flow (under a minute)
	$(PY) -m pytest tests/unit -m "not spark and not redis and not e2e and not faults" -q

lint: setup ## ruff (lint + format check), mypy on src/, hadolint on the Dockerfile
	$(VENV)/bin/ruff check src tests jobs bench
	$(VENV)/bin/ruff format --check src tests jobs bench
	$(VENV)/bin/mypy src
	$(VENV)/bin/hadolint --config .hadolint.yaml Dockerfile

bench: setup ## run the benchmarks in bench/ (minutes; figures go to bench/results/)
	@for b in $(filter-out bench/harness.py bench/feast_peer.py,$(wildcard bench/*.py)); do echo "== $$b"; $(PY) $$b || exit 1; done

bench-feast: setup ## scorehouse against the real Feast (its own venv outside the repo; bench/results/feast_peer_*.json)
	$(PY) bench/feast_peer.py --rows 1000000 --parts training_set --out bench/results/feast_peer_training_set.json
	$(PY) bench/feast_peer.py --rows 250000 --parts redis --out bench/results/feast_peer_redis_250k.json

clean: ## remove local state (.scorehouse) and caches
	rm -rf .scorehouse .pytest_cache .mypy_cache .ruff_cache

.PHONY: help setup demo test test-fast lint bench bench-feast clean

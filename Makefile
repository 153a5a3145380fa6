# Reelbatch: one command per job. Everything runs through uv (locked dependencies in uv.lock).
# On a machine with only Python, `make run` installs uv with pip first (`python3 -m uv` then).
PYTHON ?= python3
UV ?= $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --frozen

.PHONY: uv setup run run-distributed demo test test-fast test-scale lint format proto proto-check ts-check services bench bench-quick bench-soak certs clean console-screenshots

uv: ## install uv with pip when it is missing
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --user --quiet uv \
		|| $(PYTHON) -m pip install --user --quiet --break-system-packages uv

# Compiled to bytecode once here: where PYTHONDONTWRITEBYTECODE is set (as on our CI machines)
# every process would otherwise compile ~12 MB of source at start (~3x its start-up CPU).
setup: uv ## install the locked dependencies into .venv, compiled to bytecode
	$(UV) sync --frozen --compile-bytecode
	$(UV) run --frozen python -m compileall -q libs services

run: setup ## everything in one process: embedded PostgreSQL, no RabbitMQ; demo tenant `demo-key`
	$(RUN) reelbatch run

run-distributed: setup services ## one process per service on local PostgreSQL + RabbitMQ
	REELBATCH_MODE=distributed $(RUN) reelbatch run

demo: setup ## replay the seed live demo against a running system (REELBATCH_DEMO_URL)
	$(RUN) reelbatch demo

test: setup services ## the whole suite: unit, integration and end-to-end, against real PostgreSQL and RabbitMQ
	$(RUN) pytest

test-fast: setup ## unit tests only (no services needed)
	$(RUN) pytest tests/unit

test-scale: setup services ## the long multi-process tests: replicas, several hosts, crashes, chaos rounds, drains, outages, the SDK/CLI and soak runs (minutes)
	REELBATCH_TEST_SCALE=1 $(RUN) pytest tests/scale tests/sdk

lint: setup ## ruff, mypy (strict), import contracts, buf lint and buf breaking on protos/, Kubernetes manifests, compose files
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy libs services tests bench clients/python/src
	$(RUN) lint-imports
	$(RUN) buf lint protos
	$(RUN) scripts/check_proto_breaking.sh
	$(RUN) python scripts/check_kubernetes.py
	$(RUN) python scripts/check_compose.py

format: setup
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

proto: setup ## regenerate libs/contracts from protos/
	$(RUN) scripts/gen_protos.sh

proto-check: proto ## fail when the committed generated code is stale
	git diff --exit-code -- libs/contracts

ts-check: setup ## fail when the committed TypeScript client (clients/typescript) is stale
	scripts/check_typescript_client.sh

bench: setup services ## every benchmark against its floor, in one run (about 10 minutes; after a migration change, once, plus the history template build)
	$(RUN) python -m bench.run_all

bench-quick: setup services ## the benchmarks at tiny sizes (CI runs this so they never rot)
	$(RUN) python -m bench.run_all --quick

bench-soak: setup services ## the long runs: 1,000,000 tasks sustained beside Celery; one worker holding 10,000 in-flight provider jobs (tens of minutes; not on CI)
	$(RUN) python -m bench.soak

console-screenshots: setup services ## every console page on the seed demo in Chromium: docs/console/*.png and docs/console.md (not on CI)
	$(RUN) python -m tests.browser.console_screenshots

certs: ## a local CA and per-service certificates for mutual TLS on internal gRPC (certs/)
	scripts/make_certs.sh certs

services: ## start PostgreSQL and RabbitMQ if they are down, and wait until they answer
	scripts/ensure_services.sh

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache

# Reelbatch: one command per job. Everything runs through uv (locked dependencies in uv.lock).
UV ?= uv
RUN := $(UV) run --frozen

.PHONY: setup run test test-fast lint format proto proto-check services bench clean

setup: ## install the locked dependencies into .venv
	$(UV) sync --frozen

run: setup ## run every service locally (PostgreSQL + RabbitMQ on 127.0.0.1), demo tenant `demo-key`
	$(RUN) reelbatch run

test: setup services ## the whole suite: unit, integration and end-to-end, against real PostgreSQL and RabbitMQ
	$(RUN) pytest

test-fast: setup ## unit tests only (no services needed)
	$(RUN) pytest tests/unit

lint: setup ## ruff, mypy (strict), import contracts
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy libs services tests
	$(RUN) lint-imports

format: setup
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

proto: setup ## regenerate libs/contracts from protos/
	$(RUN) scripts/gen_protos.sh

proto-check: proto ## fail when the committed generated code is stale
	git diff --exit-code -- libs/contracts

services: ## start PostgreSQL and RabbitMQ if they are down, and wait until they answer
	scripts/ensure_services.sh

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache

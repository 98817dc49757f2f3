# Two commands: `make run` serves the bridge, `make test` runs the suite. Both install first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# HOST and PORT (make variables or environment) are passed on only when set, so that
# bridge_project.serve can fall back to .env's HOST/PORT, then to 127.0.0.1:8000.
HOST ?=
PORT ?=
# Server processes on the one port: a number, or auto (one per core). Passed on only when set,
# like HOST and PORT (so .env's WORKERS applies); serve.py's default is 1. More than 1 needs
# REDIS_URL (README, the paragraph on WORKERS).
WORKERS ?=
SERVER ?= uvicorn
PYTEST_ARGS ?=

.PHONY: install run test test-browser lint format migrations-check bench-audio bench-audio-smoke soak bench loadtest-smoke api-contract clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# serve.py prints the "Serving on" line: only it knows the address once .env is read.
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo "No admin user yet? Create one with: $(BIN)/python manage.py createsuperuser"
	exec $(BIN)/python -m bridge_project.serve --server $(SERVER) $(if $(WORKERS),--workers $(WORKERS)) $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The back-office in Debian's Chromium (apt-get install chromium), driven by Playwright; the
# browser extra is installed on top of dev. A missing Chromium fails here instead of skipping.
BROWSER_STAMP := $(VENV)/.installed-browser
$(BROWSER_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,browser]'
	touch $(BROWSER_STAMP)

test-browser: $(BROWSER_STAMP)
	REQUIRE_BROWSER=1 $(BIN)/python -m pytest -m browser $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrations-check: install
	$(BIN)/python manage.py makemigrations --check --dry-run

bench-audio: install
	$(BIN)/python -m audio.bench

bench-audio-smoke: install
	$(BIN)/python -m audio.bench --smoke

# A long reliability run (about 11 minutes), not part of `make test`: see docs/reliability.md.
soak: install
	$(BIN)/python manage.py soak --calls 50 --minutes 10 --drop-every 60

# The load benchmark (about 12 minutes, not part of `make test`): the server pinned to one core,
# the floor (bench/floor.py, the thinnest Channels forwarder) and the bridge side by side at
# 100/150/200 echo calls, daphne and the yardstick beside them, then the bridge on 2 workers
# (Redis channel layer, nothing pinned, the generator on the same machine) at rising call counts
# for calls per machine at p99 <= 10 ms; see docs/performance.md. Redis must be reachable at
# BENCH_REDIS_URL (default redis://127.0.0.1:6379/12). The `bench` extra brings FastAPI for the
# yardstick.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run.py

# CI guard, not a timed test: 10 echo calls for 5 s lose no frame and fail no call.
loadtest-smoke: install
	$(BIN)/python bench/run.py --smoke

# The OpenAPI schema held to the live server (about a minute): a throwaway database (SQLite, or a
# new database on DATABASE_URL's PostgreSQL), a seeded call and token, `make run`'s server, then
# schemathesis with every check. Fails on any finding; prints the seed (replay with
# CONTRACT_ARGS="--seed N"). The `contract` extra brings schemathesis.
CONTRACT_STAMP := $(VENV)/.installed-contract
CONTRACT_ARGS ?=
$(CONTRACT_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,contract]'
	touch $(CONTRACT_STAMP)

api-contract: $(CONTRACT_STAMP)
	$(BIN)/python contract/run.py $(CONTRACT_ARGS)

clean:
	rm -rf $(VENV) staticfiles .pytest_cache

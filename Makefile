# The two commands for a fresh machine (see README):
#   make run    set up, migrate and seed the embedded SQLite database, and serve the API
#   make test   set up and run the linters and the test suite (MariaDB must be reachable)

VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench bench-writes bench-layers hostile walk fuzz chromium wrk

$(BIN)/pserve: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/pserve
	$(BIN)/alembic -c development.ini upgrade head
	$(BIN)/api-seed development.ini
	$(BIN)/pserve development.ini --reload

lint: $(BIN)/pserve
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# postgrest-js, for tests/test_postgrest_js.py (skipped without node, but in CI)
tests/js/node_modules: tests/js/package-lock.json
	if command -v npm >/dev/null; then npm ci --prefix tests/js --no-audit --no-fund; \
	else echo "npm not found: tests/test_postgrest_js.py will be skipped"; fi

# Debian's Chromium, for tests/test_docs.py (Playwright drives it; it downloads no browser)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	command -v chromium >/dev/null || (DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium \
		|| (DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium))

test: lint tests/js/node_modules chromium
	$(BIN)/python -m pytest

# Needs MariaDB; installs wrk from Debian. BENCH_ARGS=--short for a quick run.
wrk:
	command -v wrk >/dev/null || (DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q wrk \
		|| (DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q wrk))

bench: $(BIN)/pserve wrk
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Every write of the protocol beside asyncmy's ceilings (bench/writes.py).
bench-writes: $(BIN)/pserve wrk
	$(BIN)/python -m bench.writes $(BENCH_ARGS)

# Where a request's worker CPU goes, by layer (bench/layers.py): py-spy samples the worker.
$(BIN)/py-spy: pyproject.toml $(BIN)/pserve
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

bench-layers: $(BIN)/py-spy wrk
	$(BIN)/python -m bench.layers $(BENCH_ARGS)

# Attacks against pserve production.ini on MariaDB (bench/hostile.py); about a minute.
hostile: $(BIN)/pserve
	$(BIN)/python -m bench.hostile

# Random selects, filters and writes (tx=rollback) over Sakila on MariaDB (bench/walk.py); a minute.
walk: $(BIN)/pserve
	$(BIN)/python -m bench.walk $(BENCH_ARGS)

# Schemathesis over every operation of Sakila on MariaDB (bench/fuzz.py); about 8 minutes.
fuzz: $(BIN)/pserve
	$(BIN)/python -m bench.fuzz $(BENCH_ARGS)

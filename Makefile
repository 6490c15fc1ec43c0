# Set-up and entry points. `make run` and `make test` work on a fresh machine: they create .venv
# (Python 3.11) and install the pinned stack (deploy/constraints.txt) before running anything.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: install browser run test lint bench clean

install: $(STAMP)

$(STAMP): setup.py deploy/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c deploy/constraints.txt -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hourglass run

# Debian's chromium, for the headless check of the report page (a set-up step, never inside the suite).
browser:
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The benchmarks also need the bench extra (sample photographs), which the package and the suite do not.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c deploy/constraints.txt -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks $(BENCH)

clean:
	rm -rf $(VENV) hourglass-output build *.egg-info
